"""Template rendering: local wording per locale, DST-correct zone names, the sandbox, strict variables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apptremind_notification.channels.rendering import (
    DEFAULT_TEMPLATES,
    TemplateError,
    default_template,
    render,
    template_variables,
)

DATA = {"customer_name": "Ada", "business_name": "Salon <Nord>", "service_name": "Haircut"}


def _render(
    body: str, *, locale: str = "en", zone: str = "America/New_York", start: datetime, subject: str = ""
):
    return render(
        subject, body, DATA, locale=locale, time_zone=zone, start=start, end=start + timedelta(hours=1)
    )


@pytest.mark.parametrize(
    ("locale", "zone", "start_utc", "expected"),
    [
        # Winter: New York is on EST (UTC-5), Berlin on MEZ/CET (UTC+1).
        (
            "en",
            "America/New_York",
            datetime(2026, 12, 1, 19, 30, tzinfo=UTC),
            "Tuesday, December 1, 2026 at 2:30 PM EST",
        ),
        (
            "de",
            "Europe/Berlin",
            datetime(2026, 12, 1, 13, 30, tzinfo=UTC),
            "Dienstag, 1. Dezember 2026 um 14:30 MEZ",
        ),
        # Summer: EDT (UTC-4) and MESZ (UTC+2) — same wall-clock time, different UTC instants.
        (
            "en",
            "America/New_York",
            datetime(2026, 7, 7, 18, 30, tzinfo=UTC),
            "Tuesday, July 7, 2026 at 2:30 PM EDT",
        ),
        (
            "de",
            "Europe/Berlin",
            datetime(2026, 7, 7, 12, 30, tzinfo=UTC),
            "Dienstag, 7. Juli 2026 um 14:30 MESZ",
        ),
        # No CLDR short name for Berlin in English: the tz database's abbreviation is used.
        (
            "en",
            "Europe/Berlin",
            datetime(2026, 7, 7, 12, 30, tzinfo=UTC),
            "Tuesday, July 7, 2026 at 2:30 PM CEST",
        ),
        (
            "en",
            "Europe/Berlin",
            datetime(2026, 12, 1, 13, 30, tzinfo=UTC),
            "Tuesday, December 1, 2026 at 2:30 PM CET",
        ),
    ],
)
def test_when_is_local_wording_with_dst_correct_zone(
    locale: str, zone: str, start_utc: datetime, expected: str
) -> None:
    rendered = _render("{{ when }}", locale=locale, zone=zone, start=start_utc)
    assert rendered.text == expected


def test_dst_switch_night_changes_the_abbreviation() -> None:
    # Europe/Berlin leaves summer time at 03:00 local on 2026-10-25: 00:30 UTC is 02:30 MESZ,
    # 01:30 UTC is 02:30 MEZ — the same wall-clock time twice, told apart only by the zone name.
    first = template_variables(
        DATA,
        locale="de",
        time_zone="Europe/Berlin",
        start=datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        end=datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    )
    second = template_variables(
        DATA,
        locale="de",
        time_zone="Europe/Berlin",
        start=datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        end=datetime(2026, 10, 25, 2, 0, tzinfo=UTC),
    )
    assert (first["time"], first["time_zone_name"]) == ("02:30", "MESZ")
    assert (second["time"], second["time_zone_name"]) == ("02:30", "MEZ")


def test_variables_date_time_and_data() -> None:
    start = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    rendered = _render(
        "{{ customer_name }}|{{ date }}|{{ time }}|{{ end_time }}|{{ time_zone_name }}",
        subject="{{ service_name }}\non {{ date }}",
        start=start,
    )
    assert rendered.text == "Ada|Tuesday, December 1, 2026|2:30 PM|3:30 PM|EST"
    # A subject is one header line, whatever the template's line breaks.
    assert rendered.subject == "Haircut on Tuesday, December 1, 2026"


def test_html_part_is_escaped_and_text_is_not() -> None:
    rendered = _render(
        "Hi {{ customer_name }},\n\nsee you at {{ business_name }}.", start=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert "Salon <Nord>" in rendered.text
    assert rendered.html is not None
    assert "Salon &lt;Nord&gt;" in rendered.html
    assert "<p>Hi Ada,</p>" in rendered.html
    assert "<Nord>" not in rendered.html


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer_name.__class__ }}",
        "{{ (customer_name | attr('__class__')) }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_refuses_attribute_access(template: str) -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        _render(template, start=datetime(2026, 12, 1, tzinfo=UTC))


def test_sandbox_refuses_huge_output() -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        _render("{{ 'x' * 10 ** 9 }}", start=datetime(2026, 12, 1, tzinfo=UTC))


def test_missing_variable_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="staff_name"):
        _render("Hello {{ staff_name }}", start=datetime(2026, 12, 1, tzinfo=UTC))


def test_syntax_error_is_a_template_error_with_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        _render("fine\n{% if %}", start=datetime(2026, 12, 1, tzinfo=UTC))


def test_unknown_zone_or_locale_is_a_template_error() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(TemplateError, match="time zone"):
        _render("{{ when }}", zone="Mars/Olympus", start=start)
    with pytest.raises(TemplateError, match="locale"):
        _render("{{ when }}", locale="xx_notalocale", start=start)


def test_naive_times_are_refused() -> None:
    with pytest.raises(TemplateError, match="time zone"):
        _render("{{ when }}", start=datetime(2026, 12, 1, 10, 0))


def test_every_default_template_renders_in_its_locale() -> None:
    start = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
    for (kind, channel, locale), (subject, body) in DEFAULT_TEMPLATES.items():
        rendered = render(
            subject,
            body,
            DATA,
            locale=locale,
            time_zone="Europe/Berlin",
            start=start,
            end=start + timedelta(hours=1),
        )
        assert "Haircut" in rendered.text, (kind, channel, locale)
        if channel == "email":
            assert rendered.subject, (kind, locale)
    for kind in ("reminder", "confirmation"):
        for channel in ("email", "sms"):
            for locale in ("en", "de"):
                assert (kind, channel, locale) in DEFAULT_TEMPLATES


def test_default_template_falls_back_to_language_then_english() -> None:
    assert default_template("reminder", "sms", "de_AT") == DEFAULT_TEMPLATES[("reminder", "sms", "de")]
    assert default_template("reminder", "sms", "de-CH") == DEFAULT_TEMPLATES[("reminder", "sms", "de")]
    assert default_template("reminder", "email", "ja") == DEFAULT_TEMPLATES[("reminder", "email", "en")]
    with pytest.raises(KeyError):
        default_template("invoice", "email", "en")


def test_sms_text_has_no_no_break_spaces() -> None:
    # CLDR puts U+202F before "PM"; it is outside GSM-7 and would make the SMS UCS-2.
    rendered = _render("{{ when }}", start=datetime(2026, 12, 1, 19, 30, tzinfo=UTC))
    assert "\u202f" not in rendered.text
    assert "\u00a0" not in rendered.text
