"""RFC 5545 calendar invitations (.ics) attached to confirmation and reminder e-mails."""

from __future__ import annotations

from datetime import UTC, datetime

from .base import Attachment

_PRODID = "-//ApptRemind//Notifications//EN"
_FOLD_AT = 75  # octets per physical line, CRLF excluded (RFC 5545 §3.1)


def calendar_invite(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str,
    *,
    location: str = "",
    description: str = "",
    organizer_email: str = "",
    method: str = "REQUEST",
    sequence: int = 0,
    attendee_email: str = "",
    dtstamp: datetime | None = None,
) -> bytes:
    """One VEVENT in a VCALENDAR, times in UTC, CRLF line ends, folded at 75 octets.

    ``sequence`` must grow with every change of the same ``uid`` (a reschedule), and ``method="CANCEL"``
    with a higher sequence withdraws it, so calendar clients update the event instead of adding another.
    """
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must carry a time zone")
    if end <= start:
        raise ValueError("end must be after start")
    stamp = dtstamp or datetime.now(UTC)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{_PRODID}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method.upper()}",
        "BEGIN:VEVENT",
        f"UID:{_text(uid)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"DTSTART:{_utc(start)}",
        f"DTEND:{_utc(end)}",
        f"SEQUENCE:{sequence}",
        f"SUMMARY:{_text(summary)}",
        "STATUS:CANCELLED" if method.upper() == "CANCEL" else "STATUS:CONFIRMED",
    ]
    if location:
        lines.append(f"LOCATION:{_text(location)}")
    if description:
        lines.append(f"DESCRIPTION:{_text(description)}")
    if organizer_email:
        lines.append(f"ORGANIZER:mailto:{organizer_email}")
    if attendee_email:
        lines.append(f"ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{attendee_email}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return b"".join(_fold(line.encode("utf-8")) + b"\r\n" for line in lines)


def invite_attachment(ics: bytes, *, method: str = "REQUEST") -> Attachment:
    return Attachment(
        filename="invite.ics", content_type=f"text/calendar; method={method.upper()}; charset=UTF-8", data=ics
    )


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 §3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _fold(line: bytes) -> bytes:
    """Split after at most 75 octets, each continuation starting with one space, never inside a UTF-8
    character."""
    parts: list[bytes] = []
    limit = _FOLD_AT
    while len(line) > limit:
        cut = limit
        while cut > 0 and (line[cut] & 0xC0) == 0x80:  # a continuation byte: back up to the char start
            cut -= 1
        parts.append(line[:cut])
        line = line[cut:]
        limit = _FOLD_AT - 1  # the leading space counts toward the next line's 75
    parts.append(line)
    return b"\r\n ".join(parts)
