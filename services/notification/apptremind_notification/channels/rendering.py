"""Renders business-authored message templates with the appointment's local wording.

Templates come from businesses, so they are untrusted: they run in Jinja2's sandbox with strict undefined
variables, and every failure (syntax, a missing variable, a refused attribute) becomes a TemplateError.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, get_timezone_name
from jinja2.sandbox import SandboxedEnvironment

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000

# CLDR's date-time glue in the data Babel ships is "{date}, {time}"; the spoken "at" form reads better in a
# reminder, so the locales we ship default templates for get their own word.
_AT_WORD = {"en": "at", "de": "um", "fr": "à", "nl": "om", "es": "a las", "pt": "às"}

# Narrow and ordinary no-break spaces (CLDR puts them before AM/PM) are outside GSM-7 and would force an SMS
# into UCS-2, halving its length; plain spaces read the same.
_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " "})


class TemplateError(Exception):
    """A template that cannot be rendered; ``reason`` is safe to show to the business that wrote it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class _Sandbox(SandboxedEnvironment):
    """The sandbox, also refusing arithmetic that would build enormous values (``'x' * 10**9``)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise jinja2.exceptions.SecurityError("exponent too large")
            return operator.pow(left, right)
        size = max(_sized(left), _sized(right))
        count = right if isinstance(right, int) else left if isinstance(left, int) else 1
        if size * max(count, 0) > MAX_OUTPUT_CHARS:
            raise jinja2.exceptions.SecurityError("result too large")
        return operator.mul(left, right)


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


_text_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
_html_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=True, keep_trailing_newline=False)


def render(
    subject_template: str,
    body_template: str,
    data: Mapping[str, str],
    *,
    locale: str,
    time_zone: str,
    start: datetime,
    end: datetime,
    html: bool = True,
) -> Rendered:
    """Render subject and body; ``html`` also renders the body autoescaped into a simple HTML part."""
    variables = template_variables(data, locale=locale, time_zone=time_zone, start=start, end=end)
    subject = " ".join(_render(_text_env, subject_template, variables).split())
    text = _render(_text_env, body_template, variables).strip()
    html_part = _paragraphs(_render(_html_env, body_template, variables)) if html else None
    return Rendered(subject=subject, text=text, html=html_part)


def template_variables(
    data: Mapping[str, str], *, locale: str, time_zone: str, start: datetime, end: datetime
) -> dict[str, str]:
    """``data`` plus the appointment's time in the business's zone, worded for ``locale``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise TemplateError("start and end must carry a time zone")
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TemplateError(f"unknown time zone {time_zone!r}") from exc
    babel_locale = _locale(locale)
    local_start = start.astimezone(zone)
    local_end = end.astimezone(zone)
    date = format_date(local_start, "full", locale=babel_locale).translate(_SPACES)
    time = format_time(local_start, "short", locale=babel_locale).translate(_SPACES)
    zone_name = time_zone_abbreviation(local_start, babel_locale)
    at = _AT_WORD.get(babel_locale.language)
    when = f"{date} {at} {time} {zone_name}" if at else f"{date}, {time} {zone_name}"
    computed = {
        "when": when,
        "date": date,
        "time": time,
        "end_time": format_time(local_end, "short", locale=babel_locale).translate(_SPACES),
        "time_zone_name": zone_name,
    }
    return {**dict(data), **computed}


def time_zone_abbreviation(local: datetime, locale: Locale) -> str:
    """The short zone name a reader of ``locale`` knows (MEZ/MESZ in German, EST/EDT in English).

    CLDR has short names only for some locale/zone pairs; where it has none, the tz database's
    abbreviation (CET, BST, IST) is better than Babel's numeric fallback, and an offset is the last resort.
    """
    cldr = get_timezone_name(local, "short", locale=locale, zone_variant=None)
    if cldr.isalpha() and len(cldr) <= 6:
        return cldr
    tz_abbreviation = local.tzname() or ""
    if tz_abbreviation.isalpha():
        return tz_abbreviation
    return format_datetime(local, "ZZZZ", tzinfo=local.tzinfo, locale=locale)


def _locale(tag: str) -> Locale:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise TemplateError(f"unknown locale {tag!r}") from exc


@functools.lru_cache(maxsize=1024)
def _compiled(env: SandboxedEnvironment, source: str) -> jinja2.Template:
    # Compiling costs far more than rendering; a business's few templates are compiled once per process.
    return env.from_string(source)


def _render(env: SandboxedEnvironment, source: str, variables: Mapping[str, str]) -> str:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        output = _compiled(env, source).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error on line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"undefined variable: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"not allowed in templates: {exc}") from exc
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        raise TemplateError(f"template failed: {exc}") from exc
    if len(output) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"rendered text longer than {MAX_OUTPUT_CHARS} characters")
    return output


def _paragraphs(escaped: str) -> str:
    """Blank lines separate paragraphs, single newlines become line breaks; input is already escaped."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", escaped.strip()) if b.strip()]
    body = "\n".join("<p>" + b.replace("\n", "<br>\n") + "</p>" for b in blocks)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>'


DEFAULT_TEMPLATES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("reminder", "email", "en"): (
        "Reminder: {{ service_name }} on {{ date }}",
        "Hello {{ customer_name }},\n\n"
        "this is a reminder of your appointment for {{ service_name }} with {{ business_name }} "
        "on {{ when }}.\n\n"
        "The calendar invitation is attached.\n\n{{ business_name }}",
    ),
    ("reminder", "sms", "en"): (
        "",
        "Reminder: {{ service_name }} at {{ business_name }}, {{ when }}. "
        "Reply C to confirm, X to cancel, STOP to opt out.",
    ),
    ("confirmation", "email", "en"): (
        "Booked: {{ service_name }} on {{ date }}",
        "Hello {{ customer_name }},\n\n"
        "your appointment for {{ service_name }} with {{ business_name }} is booked for {{ when }}.\n\n"
        "The calendar invitation is attached.\n\n{{ business_name }}",
    ),
    ("confirmation", "sms", "en"): (
        "",
        "Booked: {{ service_name }} at {{ business_name }}, {{ when }}. Reply X to cancel, STOP to opt out.",
    ),
    ("reminder", "email", "de"): (
        "Erinnerung: {{ service_name }} am {{ date }}",
        "Hallo {{ customer_name }},\n\n"
        "wir erinnern Sie an Ihren Termin für {{ service_name }} bei {{ business_name }} "
        "am {{ when }}.\n\n"
        "Die Kalendereinladung ist angehängt.\n\n{{ business_name }}",
    ),
    ("reminder", "sms", "de"): (
        "",
        "Erinnerung: {{ service_name }} bei {{ business_name }}, {{ when }}. "
        "Antworten Sie C zum Bestätigen, X zum Absagen, STOP zum Abmelden.",
    ),
    ("confirmation", "email", "de"): (
        "Gebucht: {{ service_name }} am {{ date }}",
        "Hallo {{ customer_name }},\n\n"
        "Ihr Termin für {{ service_name }} bei {{ business_name }} ist gebucht: {{ when }}.\n\n"
        "Die Kalendereinladung ist angehängt.\n\n{{ business_name }}",
    ),
    ("confirmation", "sms", "de"): (
        "",
        "Gebucht: {{ service_name }} bei {{ business_name }}, {{ when }}. "
        "Antworten Sie X zum Absagen, STOP zum Abmelden.",
    ),
}
"""Built-in templates by (kind, channel, language); they use ``customer_name``, ``business_name`` and
``service_name`` from the data, plus the computed time variables."""


def default_template(kind: str, channel: str, locale: str) -> tuple[str, str]:
    """The built-in (subject, body) for ``locale`` ("de_AT" → "de"), falling back to English."""
    language = locale.replace("-", "_").split("_", 1)[0].lower()
    found = DEFAULT_TEMPLATES.get((kind, channel, language)) or DEFAULT_TEMPLATES.get((kind, channel, "en"))
    if found is None:
        raise KeyError(f"no default template for {kind}/{channel}")
    return found
