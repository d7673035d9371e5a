"""The notification-service's use cases behind its RPCs: input rules, templates, opt-outs, deliveries.

Each function checks its input before writing anything (bad input is INVALID_ARGUMENT with a reason and
changes nothing) and is scoped by the business id the caller was authorised for. Writing templates needs a
plan with custom templates (billing's entitlements, see entitlements.py); reading them does not.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from apptremind_platform import pagination, validation
from apptremind_platform.db import Conn
from apptremind_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from . import compose, entitlements, repository
from .channels.rendering import MAX_TEMPLATE_CHARS, Rendered, TemplateError

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
SUBJECT_MAX = 300
REASON_MAX = 200


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"invalid_{what}", f"{what} must be a UUID") from None


def kind(value: str) -> str:
    if value not in compose.KINDS:
        raise InvalidArgument("invalid_kind", "kind must be reminder or confirmation")
    return value


def channel(value: str) -> str:
    if value not in compose.CHANNELS:
        raise InvalidArgument("invalid_channel", "channel must be email or sms")
    return value


def address(channel_name: str, value: str) -> str:
    text = value.strip()
    if channel_name == "email":
        text = text.lower()
        if not EMAIL_RE.match(text) or len(text) > 320:
            raise InvalidArgument("invalid_address", "address is not an e-mail address")
    elif not PHONE_RE.match(text):
        raise InvalidArgument("invalid_address", "address must be an E.164 number, e.g. +4915112345678")
    return text


@dataclass(frozen=True, slots=True)
class TemplateInput:
    kind: str
    channel: str
    locale: str
    subject: str
    body: str


def _checked_text(channel_name: str, subject: str, body: str) -> tuple[str, str]:
    subject = subject.strip()
    if not body.strip():
        raise InvalidArgument("missing_body", "body is required")
    if len(body) > MAX_TEMPLATE_CHARS:
        raise InvalidArgument("template_too_long", f"body must be at most {MAX_TEMPLATE_CHARS} characters")
    if channel_name == "email" and not subject:
        raise InvalidArgument("missing_subject", "an e-mail template needs a subject")
    if channel_name == "sms" and subject:
        raise InvalidArgument("invalid_subject", "an SMS template has no subject")
    if len(subject) > SUBJECT_MAX:
        raise InvalidArgument("template_too_long", f"subject must be at most {SUBJECT_MAX} characters")
    return subject, body


def preview(
    channel_name: str, locale: str, subject: str, body: str, overrides: Mapping[str, str] | None = None
) -> Rendered:
    """The template rendered with sample data; INVALID_ARGUMENT template_invalid when it does not render."""
    data = {**compose.SAMPLE_DATA, "locale": locale, **dict(overrides or {})}
    start = compose.SAMPLE_START
    try:
        return compose.render_with(
            subject, body, data, start, start + compose.SAMPLE_DURATION, html=channel_name == "email"
        )
    except TemplateError as err:
        raise InvalidArgument("template_invalid", f"the template does not render: {err.reason}") from None


async def require_custom_templates(conn: Conn, business_id: uuid.UUID) -> None:
    """FAILED_PRECONDITION plan_required unless the business's plan includes custom templates."""
    if not await entitlements.custom_templates_allowed(conn, business_id):
        raise FailedPrecondition(
            "plan_required",
            f"the business's plan does not include {entitlements.CUSTOM_TEMPLATES}; "
            "upgrade the plan to write templates of your own",
            feature=entitlements.CUSTOM_TEMPLATES,
        )


async def create_template(conn: Conn, business_id: uuid.UUID, value: TemplateInput) -> repository.TemplateRow:
    # The plan first: a business that may not write templates learns that before fixing its input.
    await require_custom_templates(conn, business_id)
    kind_name, channel_name = kind(value.kind), channel(value.channel)
    locale = validation.locale(value.locale.strip())
    subject, body = _checked_text(channel_name, value.subject, value.body)
    preview(channel_name, locale, subject, body)
    row = await repository.insert_template(conn, business_id, kind_name, channel_name, locale, subject, body)
    if row is None:
        raise AlreadyExists(
            "template_exists", f"the business already has a {kind_name} {channel_name} template for {locale}"
        )
    return row


async def update_template(
    conn: Conn, business_id: uuid.UUID, template_id: str, subject: str, body: str
) -> repository.TemplateRow:
    await require_custom_templates(conn, business_id)
    tid = parse_id(template_id, "template_id")
    existing = await repository.get_template(conn, business_id, tid)
    if existing is None:
        raise NotFound("template_not_found", "no such template")
    subject, body = _checked_text(existing.channel, subject, body)
    preview(existing.channel, existing.locale, subject, body)
    row = await repository.update_template(conn, business_id, tid, subject, body)
    assert row is not None
    return row


async def stored_template(conn: Conn, business_id: uuid.UUID, template_id: str) -> repository.TemplateRow:
    row = await repository.get_template(conn, business_id, parse_id(template_id, "template_id"))
    if row is None:
        raise NotFound("template_not_found", "no such template")
    return row


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[repository.DeliveryRow]
    next_page_token: str


async def list_deliveries(
    conn: Conn, business_id: uuid.UUID, appointment_id: str, size: int, token: str
) -> DeliveryPage:
    appointment = parse_id(appointment_id, "appointment_id") if appointment_id else None
    limit = pagination.page_size(size)
    scope = f"deliveries:{business_id}:{appointment or ''}"
    after = pagination.decode_page_token(scope, token)
    rows = await repository.list_deliveries(conn, business_id, appointment, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_token = pagination.encode_page_token(scope, rows[-1].delivery_id) if more else ""
    return DeliveryPage(rows, next_token)


async def set_opt_out(
    conn: Conn, business_id: uuid.UUID, channel_name: str, raw_address: str, reason: str
) -> repository.OptOutRow:
    channel_name = channel(channel_name)
    clean = address(channel_name, raw_address)
    reason = reason.strip()
    if len(reason) > REASON_MAX or any(ord(c) < 32 for c in reason):
        raise InvalidArgument("invalid_reason", f"reason must be at most {REASON_MAX} printable characters")
    return await repository.upsert_opt_out(conn, business_id, channel_name, clean, reason)


async def remove_opt_out(conn: Conn, business_id: uuid.UUID, channel_name: str, raw_address: str) -> bool:
    channel_name = channel(channel_name)
    return await repository.delete_opt_out(
        conn, business_id, channel_name, address(channel_name, raw_address)
    )


@dataclass(frozen=True, slots=True)
class OptOutPage:
    items: list[repository.OptOutRow]
    next_page_token: str


def _opt_out_token(business_id: uuid.UUID, row: repository.OptOutRow) -> str:
    text = f"optouts|{business_id}|{row.channel}|{row.address}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _opt_out_after(business_id: uuid.UUID, token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, bid, channel_name, addr = text.split("|", 3)
        if prefix == "optouts" and bid == str(business_id) and channel_name in compose.CHANNELS:
            return channel_name, addr
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidArgument("invalid_page_token", "page_token does not come from this list")


async def list_opt_outs(conn: Conn, business_id: uuid.UUID, size: int, token: str) -> OptOutPage:
    limit = pagination.page_size(size)
    after = _opt_out_after(business_id, token)
    rows = await repository.list_opt_outs(conn, business_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return OptOutPage(rows, _opt_out_token(business_id, rows[-1]) if more else "")
