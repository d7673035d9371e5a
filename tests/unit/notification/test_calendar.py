"""Calendar invitations: RFC 5545 structure, UTC times, CRLF, folding at 75 octets, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from apptremind_notification.channels.calendar import calendar_invite, invite_attachment

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 12, 1, 14, 30, tzinfo=BERLIN)
STAMP = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def unfold(ics: bytes) -> list[str]:
    return ics.decode("utf-8").replace("\r\n ", "").split("\r\n")


def test_structure_and_utc_times() -> None:
    ics = calendar_invite(
        "appt-1@apptremind",
        START,
        START + timedelta(minutes=45),
        "Haircut",
        organizer_email="salon@example.com",
        attendee_email="ada@example.com",
        dtstamp=STAMP,
        sequence=2,
    )
    lines = unfold(ics)
    assert lines[0] == "BEGIN:VCALENDAR"
    assert lines[-2:] == ["END:VCALENDAR", ""]  # the last line ends with CRLF too
    assert "METHOD:REQUEST" in lines
    assert "VERSION:2.0" in lines
    assert "UID:appt-1@apptremind" in lines
    assert "DTSTART:20261201T133000Z" in lines  # 14:30 MEZ = 13:30 UTC
    assert "DTEND:20261201T141500Z" in lines
    assert "DTSTAMP:20261124T080000Z" in lines
    assert "SEQUENCE:2" in lines
    assert "ORGANIZER:mailto:salon@example.com" in lines
    assert lines.index("BEGIN:VEVENT") < lines.index("DTSTART:20261201T133000Z") < lines.index("END:VEVENT")


def test_every_line_ends_with_crlf_and_no_bare_lf() -> None:
    ics = calendar_invite("u", START, START + timedelta(hours=1), "x", dtstamp=STAMP)
    assert ics.endswith(b"\r\n")
    assert b"\n" not in ics.replace(b"\r\n", b"")
    assert b"\r" not in ics.replace(b"\r\n", b"")


def test_long_lines_fold_at_75_octets_without_splitting_characters() -> None:
    description = "Bitte 10 Minuten früher kommen; Parkplätze hinter dem Haus, Eingang über den Hof. " * 4
    ics = calendar_invite(
        "u", START, START + timedelta(hours=1), "Fön & Schnitt", description=description, dtstamp=STAMP
    )
    physical = ics.split(b"\r\n")
    assert any(line.startswith(b" ") for line in physical), "the description should have been folded"
    for line in physical:
        assert len(line) <= 75
        line.decode("utf-8")  # no multi-byte character split across lines
    text = "\n".join(unfold(ics))
    escaped = description.replace(";", "\\;").replace(",", "\\,")
    assert f"DESCRIPTION:{escaped}" in text


def test_text_values_are_escaped() -> None:
    ics = calendar_invite(
        "u",
        START,
        START + timedelta(hours=1),
        "Cut, colour; style\\done",
        location="Main St 1\nBack door",
        dtstamp=STAMP,
    )
    lines = unfold(ics)
    assert "SUMMARY:Cut\\, colour\\; style\\\\done" in lines
    assert "LOCATION:Main St 1\\nBack door" in lines


def test_cancel_method_marks_the_event_cancelled() -> None:
    ics = calendar_invite(
        "u", START, START + timedelta(hours=1), "x", method="cancel", sequence=3, dtstamp=STAMP
    )
    lines = unfold(ics)
    assert "METHOD:CANCEL" in lines
    assert "STATUS:CANCELLED" in lines
    assert "SEQUENCE:3" in lines


def test_bad_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        calendar_invite("u", datetime(2026, 12, 1, 10), datetime(2026, 12, 1, 11), "x")
    with pytest.raises(ValueError, match="after"):
        calendar_invite("u", START, START, "x")


def test_attachment_shape() -> None:
    attachment = invite_attachment(b"BEGIN:VCALENDAR\r\n")
    assert attachment.filename == "invite.ics"
    assert attachment.content_type == "text/calendar; method=REQUEST; charset=UTF-8"
