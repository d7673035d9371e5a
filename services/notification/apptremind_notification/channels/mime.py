"""Builds the wire form of an outgoing e-mail: text, optional HTML alternative, attachments.

It uses the ``compat32`` MIME classes rather than ``EmailMessage``: the modern header registry parses every
header it stores and costs several milliseconds per message, which would cap a sender at a few hundred
messages a second on one core.
"""

from __future__ import annotations

import re
from email import charset as email_charset
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, parseaddr

from .base import OutgoingMessage

# Quoted-printable keeps mostly-ASCII text readable in the raw message (and smaller than base64).
_UTF8_QP = email_charset.Charset("utf-8")
_UTF8_QP.body_encoding = email_charset.QP
_WIRE = compat32.clone(linesep="\r\n")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")


def valid_address(address: str) -> bool:
    return bool(_ADDR_SPEC.match(address))


def build_email(message: OutgoingMessage, *, sender: str, message_id: str) -> bytes:
    """The RFC 5322 message as bytes with CRLF line ends, ready for SMTP DATA."""
    body = _body(message)
    if message.attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(body)
        for attachment in message.attachments:
            mixed.attach(_attachment(attachment.content_type, attachment.filename, attachment.data))
        body = mixed
    name, address = parseaddr(sender)
    body["From"] = formataddr((_one_line(name), address), charset="utf-8") if name else address
    body["To"] = message.recipient
    body["Subject"] = _header(message.subject)  # type: ignore[assignment]  # compat32 takes Header values
    body["Date"] = formatdate(usegmt=True)
    body["Message-ID"] = message_id
    if "MIME-Version" not in body:
        body["MIME-Version"] = "1.0"
    return body.as_bytes(policy=_WIRE)


def _body(message: OutgoingMessage) -> Message:
    text = MIMEText(message.text, "plain", _UTF8_QP)  # type: ignore[arg-type]
    del text["MIME-Version"]  # set once on the outermost part
    if message.html is None:
        return text
    html = MIMEText(message.html, "html", _UTF8_QP)  # type: ignore[arg-type]
    del html["MIME-Version"]
    alternative = MIMEMultipart("alternative")
    del alternative["MIME-Version"]
    alternative.attach(text)
    alternative.attach(html)
    return alternative


def _attachment(content_type: str, filename: str, data: bytes) -> MIMEBase:
    mime_type, *raw_params = (p.strip() for p in content_type.split(";"))
    maintype, _, subtype = mime_type.partition("/")
    params = {
        key.strip(): value.strip().strip('"')
        for key, _, value in (p.partition("=") for p in raw_params if "=" in p)
    }
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    del part["MIME-Version"]
    for key, value in params.items():
        part.set_param(key, value)
    part.set_payload(data)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _header(value: str) -> str | Header:
    value = _one_line(value)
    return value if value.isascii() else Header(value, "utf-8")
