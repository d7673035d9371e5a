"""The wire form of outgoing e-mail, read back with the standard library's strict modern parser."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from apptremind_notification.channels.base import Attachment, OutgoingMessage, ProviderError
from apptremind_notification.channels.email import SmtpProvider
from apptremind_notification.channels.mime import build_email


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def outgoing(**overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "channel": "email",
        "recipient": "ada@example.com",
        "text": "Grüße aus dem Salon",
        "reference": "d1",
        "subject": "Erinnerung: Fön am Dienstag",
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def test_text_only_message_with_unicode_headers() -> None:
    raw = build_email(
        outgoing(), sender="Salon Müller <hallo@salon.example>", message_id="<d1@salon.example>"
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii(), "8-bit content must be encoded for servers without 8BITMIME"
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg["Subject"] == "Erinnerung: Fön am Dienstag"
    assert msg["From"].addresses[0].display_name == "Salon Müller"
    assert msg["From"].addresses[0].addr_spec == "hallo@salon.example"
    assert msg["Message-ID"] == "<d1@salon.example>"
    assert msg["Date"].datetime.utcoffset().total_seconds() == 0
    assert msg.get_content().strip() == "Grüße aus dem Salon"
    assert len(msg.get_all("MIME-Version") or []) == 1


def test_alternative_and_attachment_structure() -> None:
    attachment = Attachment(
        "invite.ics", "text/calendar; method=REQUEST; charset=UTF-8", b"BEGIN:VCALENDAR\r\n"
    )
    raw = build_email(
        outgoing(html="<p>Grüße</p>", attachments=(attachment,)),
        sender="a@b.example",
        message_id="<d1@b.example>",
    )
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/mixed"
    assert len(msg.get_all("MIME-Version") or []) == 1
    alternative, invite = msg.get_payload()  # type: ignore[misc]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert invite.get_content_type() == "text/calendar"
    assert invite.get_param("method") == "REQUEST"
    assert invite.get_filename() == "invite.ics"
    assert invite.get_payload(decode=True) == b"BEGIN:VCALENDAR\r\n"


def test_line_breaks_in_the_subject_cannot_inject_headers() -> None:
    raw = build_email(
        outgoing(subject="Hello\r\nBcc: victim@example.com"),
        sender="a@b.example",
        message_id="<d1@b.example>",
    )
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hello Bcc: victim@example.com"


@pytest.mark.parametrize(
    "recipient", ["", "not-an-address", "a@b", "x@y.example\r\nBcc: z@z.example", "<a@b.c>"]
)
async def test_invalid_recipient_is_permanent_before_connecting(recipient: str) -> None:
    # Port 9 (discard) on a closed host: the address check must fail before any connection is tried.
    provider = SmtpProvider("smtp", "127.0.0.1", 9, sender="a@b.example", starttls=False, timeout=1)
    with pytest.raises(ProviderError) as err:
        await provider.send(outgoing(recipient=recipient))
    assert not err.value.retryable
    assert "invalid recipient" in err.value.reason
    await provider.aclose()


async def test_wrong_channel_is_refused() -> None:
    provider = SmtpProvider("smtp", "127.0.0.1", 9, sender="a@b.example", starttls=False)
    with pytest.raises(ProviderError, match="cannot send sms"):
        await provider.send(outgoing(channel="sms"))
    await provider.aclose()
