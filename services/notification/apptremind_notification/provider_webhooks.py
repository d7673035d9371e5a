"""The SMS provider's webhooks, as the edge forwards them: delivery status callbacks and inbound replies.

The edge checks the signature too, but (ADR 0006) no service trusts the network: the service verifies
Twilio's signature again with its own copy of the auth token before touching anything.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from psycopg_pool import AsyncConnectionPool

from apptremind_platform.clock import Clock
from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import PermissionDenied, Unavailable
from apptremind_platform.logs import get_logger
from apptremind_platform.webhook_signatures import verify_twilio_signature

from . import repository
from .booking_client import Booking, BookingRefused, BookingUnavailable
from .metrics import WEBHOOKS

log = get_logger(__name__)

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
CONFIRM_WORDS = frozenset({"C"})
CANCEL_WORDS = frozenset({"X"})

# Twilio's MessageStatus -> our delivery status; statuses before "sent" change nothing.
_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}
# A status only moves forward: callbacks can arrive out of order.
_RANK = {"queued": 0, "sending": 0, "sent": 1, "delivered": 2, "failed": 2, "skipped": 2}

REPLIES = {
    "opted_out": "You will not receive further messages. Reply START to opt back in.",
    "opted_in": "You will receive messages again. Reply STOP to opt out.",
    "confirmed": "Thanks, your appointment is confirmed.",
    "cancelled": "Your appointment is cancelled.",
    "no_appointment": "We could not find an appointment to change for this number.",
    "refused": "Sorry, that cannot be done any more. Please contact the business.",
}


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    params: Mapping[str, str]
    signature: str


@dataclass(frozen=True, slots=True)
class StatusResult:
    matched: bool
    status: str = ""


@dataclass(frozen=True, slots=True)
class InboundResult:
    action: str
    reply: str = ""


def verify(webhook: Webhook, auth_tokens: tuple[str, ...], kind: str) -> None:
    """Refuses (PERMISSION_DENIED invalid_signature) unless one of our auth tokens signed the request."""
    if webhook.signature and any(
        verify_twilio_signature(token, webhook.url, webhook.params, webhook.signature)
        for token in auth_tokens
    ):
        WEBHOOKS.labels(kind, "ok").inc()
        return
    WEBHOOKS.labels(kind, "bad_signature").inc()
    raise PermissionDenied("invalid_signature", "the webhook is not signed by the SMS provider")


def _delivery_reference(url: str) -> uuid.UUID | None:
    values = parse_qs(urlsplit(url).query).get("delivery", [])
    try:
        return uuid.UUID(values[0]) if values else None
    except ValueError:
        return None


async def record_status(pool: AsyncConnectionPool, webhook: Webhook, clock: Clock) -> StatusResult:
    reported = webhook.params.get("MessageStatus", "").lower()
    message_sid = webhook.params.get("MessageSid", "")
    reference = _delivery_reference(webhook.url)
    async with unit_of_work(pool) as conn:
        row = await repository.delivery_for_callback(conn, reference, message_sid)
        if row is None:
            log.info("status_callback_unmatched", message_sid=message_sid)
            return StatusResult(False)
        status = _STATUS.get(reported)
        if status is None or _RANK[status] <= _RANK.get(row.status, 0):
            return StatusResult(True, row.status)
        error = ""
        if status == "failed":
            error = f"provider status {reported} {webhook.params.get('ErrorCode', '')}".strip()
        await repository.set_callback_status(
            conn, row.business_id, row.delivery_id, status, message_sid, error
        )
        if status in ("delivered", "failed"):
            await repository.count(conn, row.business_id, clock.now().date(), row.channel, status)
    return StatusResult(True, status)


def keyword(body: str) -> str:
    words = body.strip().upper().split()
    return words[0].strip(".!") if words else ""


async def handle_inbound(
    pool: AsyncConnectionPool, booking: Booking, webhook: Webhook, clock: Clock, reply_window: dt.timedelta
) -> InboundResult:
    sender = webhook.params.get("From", "").strip()
    word = keyword(webhook.params.get("Body", ""))
    if not sender:
        return InboundResult("ignored")
    if word in STOP_WORDS:
        async with unit_of_work(pool) as conn:
            await repository.add_sms_stop(conn, sender)
        return InboundResult("opted_out", REPLIES["opted_out"])
    if word in START_WORDS:
        async with unit_of_work(pool) as conn:
            await repository.remove_sms_stop(conn, sender)
        return InboundResult("opted_in", REPLIES["opted_in"])
    if word not in CONFIRM_WORDS | CANCEL_WORDS:
        return InboundResult("ignored")
    async with unit_of_work(pool) as conn:
        latest = await repository.latest_sms_reminder(conn, sender, clock.now() - reply_window)
    if latest is None:
        return InboundResult("no_appointment", REPLIES["no_appointment"])
    try:
        if word in CONFIRM_WORDS:
            await booking.confirm(latest.manage_token)
            action = "confirmed"
        else:
            await booking.cancel(latest.manage_token, "cancelled by SMS reply")
            action = "cancelled"
    except BookingRefused as err:
        # Already cancelled, too close to the start for the business's policy, token expired, ...
        log.info("sms_reply_refused", error=str(err), delivery_id=str(latest.delivery_id))
        return InboundResult("refused", REPLIES["refused"])
    except BookingUnavailable as err:
        raise Unavailable("booking_unavailable", "booking-service did not answer; try again") from err
    return InboundResult(action, REPLIES[action])
