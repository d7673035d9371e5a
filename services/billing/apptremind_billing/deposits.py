"""The billing side of the paid booking saga (docs/adr/0014-paid-booking-saga.md).

- `authorize`: booking-service asks for a PaymentIntent with manual capture for a held appointment. Stripe
  is called outside any transaction with an idempotency key per appointment, so a repeat returns the same
  intent (and its client secret) instead of a second one.
- Stripe's webhooks move the deposit forward: `payment_intent.amount_capturable_updated` -> authorized
  (billing.deposit.authorized.v1, booking books); `payment_intent.payment_failed` / `.canceled` before
  that -> failed (billing.deposit.failed.v1, booking releases the slot).
- booking's `booking.deposit.settlement_requested.v1` says capture or release; the decision is stored as
  `settle_action` with the status change, and the settler (a background task) tells Stripe afterwards,
  backing off and retrying until Stripe has done it, then publishes billing.deposit.captured|released.v1.

Statuses only move forward (pending -> authorized|failed -> captured|released), so deliveries in any order
end in the same place: an authorisation that arrives after the hold was released is cancelled at Stripe.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.billing import v1 as pb
from apptremind_gen.apptremind.common.v1 import Money
from apptremind_gen.apptremind.events.billing import v1 as ev
from apptremind_gen.apptremind.events.booking import v1 as booking_ev
from apptremind_platform.clock import Clock
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.envelope import Decoded, Event
from apptremind_platform.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import MessageProcessor, PermanentError

from . import events
from .stripe_gateway import StripeGateway

log = get_logger(__name__)

DEPOSIT_AUTHORIZED = "billing.deposit.authorized.v1"
DEPOSIT_FAILED = "billing.deposit.failed.v1"
DEPOSIT_CAPTURED = "billing.deposit.captured.v1"
DEPOSIT_RELEASED = "billing.deposit.released.v1"
SETTLEMENT_REQUESTED = "booking.deposit.settlement_requested.v1"
CONSUMER = "billing"
MAX_AMOUNT_MINOR = 99_999_999  # Stripe's limit for most currencies
SETTLE_BATCH = 50
SETTLE_LEASE = dt.timedelta(seconds=60)

_STATUS = {
    "pending": pb.DepositStatus.PENDING,
    "authorized": pb.DepositStatus.AUTHORIZED,
    "failed": pb.DepositStatus.FAILED,
    "captured": pb.DepositStatus.CAPTURED,
    "released": pb.DepositStatus.RELEASED,
}
# Stripe's webhook types for payment intents that move a deposit.
WEBHOOK_TYPES = frozenset(
    {
        "payment_intent.amount_capturable_updated",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.succeeded",
    }
)


@dataclass(frozen=True, slots=True)
class Deposit:
    business_id: uuid.UUID
    appointment_id: uuid.UUID
    amount_minor: int
    currency: str
    status: str
    payment_intent_id: str
    reason: str
    settle_action: str | None
    updated_at: dt.datetime

    def message(self) -> pb.Deposit:
        return pb.Deposit(
            business_id=str(self.business_id),
            appointment_id=str(self.appointment_id),
            amount=Money(amount_minor=self.amount_minor, currency=self.currency),
            status=_STATUS[self.status],
            payment_intent_id=self.payment_intent_id,
            reason=self.reason,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class Authorized:
    deposit: Deposit
    client_secret: str


# --- SQL ------------------------------------------------------------------------------------------------

_COLUMNS = (
    "business_id, appointment_id, amount_minor, currency, status, payment_intent_id, reason, settle_action, "
    "updated_at"
)


async def get(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, *, for_update: bool = False
) -> Deposit | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM deposit WHERE business_id = %s AND appointment_id = %s{lock}",
        (business_id, appointment_id),
    )
    row = await cur.fetchone()
    return Deposit(*row) if row else None


async def _save(
    conn: Conn, d: Deposit, status: str, reason: str, settle: str | None, now: dt.datetime
) -> Deposit:
    await conn.execute(
        "UPDATE deposit SET status = %s, reason = %s, settle_action = %s, settle_attempts = 0, "
        "settle_error = '', settle_after = NULL, updated_at = %s WHERE business_id = %s AND appointment_id = %s",
        (status, reason, settle, now, d.business_id, d.appointment_id),
    )
    return Deposit(
        d.business_id, d.appointment_id, d.amount_minor, d.currency, status, d.payment_intent_id, reason,
        settle, now,
    )  # fmt: skip


def _event(topic: str, d: Deposit) -> Event:
    payload: Any
    if topic == DEPOSIT_AUTHORIZED:
        payload = ev.DepositAuthorized(deposit=d.message())
    elif topic == DEPOSIT_FAILED:
        payload = ev.DepositFailed(deposit=d.message())
    else:
        payload = ev.DepositSettled(deposit=d.message())
    return Event(topic, str(d.business_id), payload, subject=str(d.appointment_id))


# --- authorize (booking-service, synchronous) ---------------------------------------------------------


def _amount(value: Money | None) -> tuple[int, str]:
    if value is None or not 0 < value.amount_minor <= MAX_AMOUNT_MINOR:
        raise InvalidArgument("invalid_amount", f"the deposit must be 1..{MAX_AMOUNT_MINOR} minor units")
    currency = value.currency.strip().lower()
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidArgument("invalid_currency", "currency must be an ISO 4217 code")
    return value.amount_minor, currency


async def authorize(
    pool: AsyncConnectionPool,
    gateway: StripeGateway,
    business_id: uuid.UUID,
    appointment_id: uuid.UUID,
    amount: Money | None,
    customer_email: str,
    description: str,
    now: dt.datetime,
) -> Authorized:
    amount_minor, currency = _amount(amount)
    async with unit_of_work(pool) as conn:
        found = await get(conn, business_id, appointment_id)
    if found is not None:
        if (found.amount_minor, found.currency) != (amount_minor, currency):
            raise FailedPrecondition("deposit_mismatch", "this appointment's deposit has another amount")
        if found.status not in ("pending", "authorized"):
            raise FailedPrecondition("deposit_closed", f"this deposit is {found.status}")
    intent = await gateway.create_deposit_intent(
        amount_minor, currency, str(business_id), str(appointment_id), customer_email, description
    )
    async with unit_of_work(pool) as conn:
        cur = await conn.execute(
            "INSERT INTO deposit (business_id, appointment_id, amount_minor, currency, status, "
            "payment_intent_id, created_at, updated_at) VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s) "
            "ON CONFLICT (business_id, appointment_id) DO UPDATE SET payment_intent_id = excluded.payment_intent_id "
            "WHERE deposit.payment_intent_id = '' "
            f"RETURNING {_COLUMNS}",
            (business_id, appointment_id, amount_minor, currency, intent.payment_intent_id, now, now),
        )
        row = await cur.fetchone()
        current = Deposit(*row) if row else await get(conn, business_id, appointment_id, for_update=True)
        assert current is not None
        closed = current.status not in ("pending", "authorized")
        if closed and current.settle_action is None:
            # booking released the hold while Stripe was making the intent: the settler cancels it.
            await conn.execute(
                "UPDATE deposit SET settle_action = 'release', settle_after = NULL "
                "WHERE business_id = %s AND appointment_id = %s",
                (business_id, appointment_id),
            )
    if closed:
        raise FailedPrecondition("deposit_closed", "this reservation has been released")
    return Authorized(current, intent.client_secret)


async def read(conn: Conn, business_id: uuid.UUID, appointment_id: str) -> Deposit:
    try:
        aid = uuid.UUID(appointment_id)
    except ValueError:
        raise InvalidArgument("invalid_appointment_id", "appointment_id must be a UUID") from None
    found = await get(conn, business_id, aid)
    if found is None:
        raise NotFound("deposit_not_found", "this appointment has no deposit")
    return found


# --- Stripe's webhooks -----------------------------------------------------------------------------------


def _ids(obj: Mapping[str, Any]) -> tuple[uuid.UUID, uuid.UUID] | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    try:
        return uuid.UUID(str(meta.get("business_id"))), uuid.UUID(str(meta.get("appointment_id")))
    except ValueError:
        return None


def _decline_reason(obj: Mapping[str, Any]) -> str:
    error = obj.get("last_payment_error")
    if isinstance(error, dict):
        for key in ("decline_code", "code"):
            if isinstance(error.get(key), str) and error[key]:
                return str(error[key])[:100]
    return "payment_failed"


async def apply_webhook(conn: Conn, event_type: str, obj: Mapping[str, Any], now: dt.datetime) -> bool:
    """Applies one payment-intent webhook inside the webhook's transaction; True when it changed a deposit."""
    ids = _ids(obj)
    if ids is None:
        log.info("deposit_webhook_without_ids", type=event_type)
        return False
    d = await get(conn, *ids, for_update=True)
    if d is None:
        log.info("deposit_webhook_unknown", type=event_type, appointment_id=str(ids[1]))
        return False
    if event_type == "payment_intent.amount_capturable_updated":
        if d.status == "pending":
            d = await _save(conn, d, "authorized", "", None, now)
            await events.publish(conn, _event(DEPOSIT_AUTHORIZED, d))
            return True
        if d.status in ("released", "failed") and d.settle_action is None:
            # Paid after the slot was given up: give the money back.
            await _save(conn, d, d.status, d.reason, "release", now)
            return True
        return False
    if event_type in ("payment_intent.payment_failed", "payment_intent.canceled"):
        if d.status == "pending":
            reason = _decline_reason(obj) if event_type.endswith("payment_failed") else "canceled"
            # Cancel a failed intent too, so the customer cannot pay for a slot that is being released.
            settle = "release" if event_type.endswith("payment_failed") else None
            d = await _save(conn, d, "failed", reason, settle, now)
            await events.publish(conn, _event(DEPOSIT_FAILED, d))
            return True
        return False
    return False  # payment_intent.succeeded: the capture we asked for; settle() recorded it already


# --- booking's settlement requests ----------------------------------------------------------------------


async def request_settlement(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, capture: bool, reason: str,
    amount: Money | None, now: dt.datetime,
) -> bool:  # fmt: skip
    """Records booking's decision; True when Stripe has something to do (the settler then does it)."""
    d = await get(conn, business_id, appointment_id, for_update=True)
    if d is None:
        if capture:
            log.warning("deposit_capture_unknown", appointment_id=str(appointment_id))
            return False
        # The hold ended before an intent was made: remember it, so a late AuthorizeDeposit is refused.
        minor, currency = (amount.amount_minor, amount.currency.lower()) if amount else (0, "")
        await conn.execute(
            "INSERT INTO deposit (business_id, appointment_id, amount_minor, currency, status, reason, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, 'released', %s, %s, %s) ON CONFLICT DO NOTHING",
            (business_id, appointment_id, minor, currency, reason, now, now),
        )
        return False
    if capture:
        if d.status != "authorized":
            log.warning("deposit_capture_not_authorized", appointment_id=str(appointment_id), status=d.status)
            return False
        await _save(conn, d, "captured", reason, "capture", now)
        return True
    if d.status in ("pending", "authorized"):
        await _save(conn, d, "released", reason, "release", now)
        return True
    if d.status == "failed":
        await _save(conn, d, "failed", d.reason, "release", now)
        return True
    return False


def settlement_processor(pool: AsyncConnectionPool, clock: Clock) -> MessageProcessor:
    """Consumes booking's settlement requests (inbox-deduped); the settler does the Stripe part."""

    async def handle(conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        assert isinstance(data, booking_ev.DepositSettlementRequested)
        try:
            bid, aid = uuid.UUID(data.business_id), uuid.UUID(data.appointment_id)
        except ValueError as exc:
            raise PermanentError(f"bad ids in a settlement request: {exc}") from exc
        if data.action not in (booking_ev.DepositAction.CAPTURE, booking_ev.DepositAction.RELEASE):
            raise PermanentError(f"unknown deposit action {data.action!r}")
        capture = data.action == booking_ev.DepositAction.CAPTURE
        await request_settlement(conn, bid, aid, capture, data.reason, data.amount, clock.now())

    return MessageProcessor(
        consumer=CONSUMER,
        source=events.SOURCE,
        pool=pool,
        handlers={SETTLEMENT_REQUESTED: handle},
    )


# --- telling Stripe ---------------------------------------------------------------------------------------


async def _claim_unsettled(conn: Conn, now: dt.datetime, limit: int) -> list[Deposit]:
    """Deposits Stripe still has to be told about, leased for a while so that another billing process does
    not call Stripe for them at the same time (the calls are idempotent anyway)."""
    cur = await conn.execute(
        "UPDATE deposit SET settle_after = %s WHERE (business_id, appointment_id) IN ("
        "  SELECT business_id, appointment_id FROM deposit"
        "  WHERE settle_action IS NOT NULL AND coalesce(settle_after, '-infinity') <= %s"
        "  ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"RETURNING {_COLUMNS}",
        (now + SETTLE_LEASE, now, limit),
    )
    return [Deposit(*row) for row in await cur.fetchall()]


async def _settle_one(
    pool: AsyncConnectionPool, gateway: StripeGateway, d: Deposit, now: dt.datetime
) -> bool:
    assert d.settle_action is not None
    try:
        if not d.payment_intent_id:
            pass  # nothing was ever made at Stripe
        elif d.settle_action == "capture":
            await gateway.capture_deposit_intent(d.payment_intent_id, str(d.appointment_id), d.amount_minor)
        else:
            await gateway.cancel_deposit_intent(d.payment_intent_id, str(d.appointment_id))
    except FailedPrecondition as exc:
        # Stripe refused the call itself (the intent is already in that state, or gone): retrying cannot
        # help, so the action is dropped with its error kept for an operator.
        async with unit_of_work(pool) as conn:
            await conn.execute(
                "UPDATE deposit SET settle_action = NULL, settle_after = NULL, settle_error = %s "
                "WHERE business_id = %s AND appointment_id = %s AND settle_action = %s",
                (f"{exc.reason}: {exc}"[:500], d.business_id, d.appointment_id, d.settle_action),
            )
        log.error("deposit_settle_refused", appointment_id=str(d.appointment_id), error=str(exc))
        return False
    except DomainError as exc:
        async with unit_of_work(pool) as conn:
            await conn.execute(
                "UPDATE deposit SET settle_attempts = settle_attempts + 1, settle_error = %s, "
                "settle_after = %s + least(interval '1 second' * power(2, settle_attempts), interval '10 minutes') "
                "WHERE business_id = %s AND appointment_id = %s AND settle_action = %s",
                (f"{exc.reason}: {exc}"[:500], now, d.business_id, d.appointment_id, d.settle_action),
            )
        log.warning("deposit_settle_failed", appointment_id=str(d.appointment_id), error=str(exc))
        return False
    async with unit_of_work(pool) as conn:
        cur = await conn.execute(
            "UPDATE deposit SET settle_action = NULL, settle_after = NULL, settle_error = '', updated_at = %s "
            "WHERE business_id = %s AND appointment_id = %s AND settle_action = %s RETURNING 1",
            (now, d.business_id, d.appointment_id, d.settle_action),
        )
        if await cur.fetchone() is not None and d.payment_intent_id:
            topic = DEPOSIT_CAPTURED if d.settle_action == "capture" else DEPOSIT_RELEASED
            await events.publish(conn, _event(topic, d))
    return True


async def settle_pending(pool: AsyncConnectionPool, gateway: StripeGateway, now: dt.datetime) -> int:
    """The settler (a background task): captures or cancels at Stripe what was decided; a failure backs off
    and is tried again. Returns how many Stripe confirmed."""
    async with unit_of_work(pool) as conn:
        due = await _claim_unsettled(conn, now, SETTLE_BATCH)
    done = 0
    for d in due:
        done += await _settle_one(pool, gateway, d, now)
    return done
