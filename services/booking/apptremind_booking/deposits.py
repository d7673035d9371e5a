"""The booking side of the paid booking saga (docs/adr/0014-paid-booking-saga.md).

booking-service orchestrates: it owns the appointment, so it holds the slot (status 'held', taken like a
booking by the exclusion constraint), asks billing for a PaymentIntent with manual capture, and moves the
hold on when billing reports the outcome:

    held --billing.deposit.authorized.v1--> booked   (booked event and reminder requests, as for any booking)
    held --billing.deposit.failed.v1------> released (slot free; billing is told to cancel the intent)
    held --hold_expires_at passes---------> released (the sweeper below)

Every later change of an appointment with a deposit asks billing to settle it, in the same transaction as the
change (`booking.deposit.settlement_requested.v1`): completed and no-show capture; a cancellation by the
business, or by the customer at least `free_cancellation_hours` ahead, releases; a later one captures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio
from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.billing import v1 as billing_pb
from apptremind_gen.apptremind.common.v1 import Money
from apptremind_gen.apptremind.events.billing import v1 as billing_ev
from apptremind_platform.clock import Clock
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.envelope import Decoded
from apptremind_platform.errors import FailedPrecondition, Unavailable
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import Handler, PermanentError
from apptremind_platform.service_credentials import (
    ServiceCredentialsUnavailable,
    ServiceTokens,
    bearer_metadata,
)

from . import events, repository
from .repository import AppointmentRow

log = get_logger(__name__)

BILLING_SERVICE = "apptremind.billing.v1.BillingService"
DEPOSIT_AUTHORIZED = "billing.deposit.authorized.v1"
DEPOSIT_FAILED = "billing.deposit.failed.v1"

RELEASED_EXPIRED = "released_expired"
RELEASED_DECLINED = "released_declined"
SWEEP_BATCH = 100


# --- what happens to the deposit ------------------------------------------------------------------------


def cancellation_settlement(
    a: AppointmentRow, cancelled_by: str, now: dt.datetime
) -> tuple[bool, str] | None:
    """(capture?, reason) for cancelling `a`; None when it has no deposit. A hold that is cancelled was never
    paid for; a business that cancels never keeps the customer's money."""
    if not a.deposit_minor:
        return None
    if a.status == "held":
        return False, "cancelled_before_payment"
    if cancelled_by != "customer":
        return False, "cancelled_by_business"
    if a.start_time - now >= dt.timedelta(hours=a.free_cancellation_hours):
        return False, "cancelled_early"
    return True, "cancelled_late"


async def request_settlement(conn: Conn, a: AppointmentRow, capture: bool, reason: str) -> None:
    if a.deposit_minor:
        await events.publish(conn, events.deposit_settlement(a, capture, reason))


# --- billing's half, over gRPC --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    payment_intent_id: str
    client_secret: str


class Deposits(Protocol):
    async def authorize(self, a: AppointmentRow, description: str) -> Payment: ...


class GrpcDeposits:
    """billing-service's AuthorizeDeposit, called as the booking service itself (no user is involved: the
    customer is anonymous), with a service token from the auth-service (docs/adr/0013)."""

    def __init__(self, channel: grpc.aio.Channel, tokens: ServiceTokens, timeout_s: float = 10.0) -> None:
        self._client = AsyncServiceClient(channel, BILLING_SERVICE)
        self._tokens = tokens
        self._timeout = timeout_s

    async def authorize(self, a: AppointmentRow, description: str) -> Payment:
        try:
            metadata = await bearer_metadata(self._tokens)
            response = await self._client.call(
                "AuthorizeDeposit",
                billing_pb.AuthorizeDepositRequest(
                    business_id=str(a.business_id),
                    appointment_id=str(a.appointment_id),
                    amount=Money(amount_minor=a.deposit_minor, currency=a.deposit_currency),
                    customer_email=a.customer_email,
                    description=description[:200],
                ),
                billing_pb.AuthorizeDepositResponse,
                metadata=metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(
                    "hold_released", "this reservation has been released; book again"
                ) from err
            # The hold stays: a retry with the same idempotency key asks billing again.
            raise Unavailable(
                "payments_unavailable",
                f"the deposit could not be set up (billing-service: {err.code().name}); try again",
            ) from err
        except ServiceCredentialsUnavailable as err:  # no service token: auth-service unreachable or refusing
            raise Unavailable("payments_unavailable", "the deposit could not be set up; try again") from err
        deposit = response.deposit or billing_pb.Deposit()
        return Payment(deposit.payment_intent_id, response.client_secret)


# --- the hold's outcomes --------------------------------------------------------------------------------


class HoldOutcomes:
    """Moves holds on: billing's answers (consumed from Kafka) and the lapse sweeper.

    `announce` publishes what a fresh booking publishes (booked event, reminder requests); it is
    service.announce_booking, passed in so this module does not import the use cases."""

    def __init__(self, clock: Clock, announce: AnnounceBooking) -> None:
        self._clock = clock
        self._announce = announce

    async def authorized(self, conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID) -> bool:
        a = await repository.get_appointment(conn, business_id, appointment_id, for_update=True)
        if a is None or a.status != "held":
            # Released first (lapsed, declined, cancelled): billing cancels the intent on that settlement.
            log.info("deposit_authorized_ignored", appointment_id=str(appointment_id), status=a and a.status)
            return False
        now = self._clock.now()
        await repository.set_status(conn, business_id, appointment_id, "booked", now)
        await self._announce(conn, dataclasses.replace(a, status="booked", hold_expires_at=None), now)
        return True

    async def release(self, conn: Conn, a: AppointmentRow, reason: str) -> AppointmentRow:
        await repository.set_status(conn, a.business_id, a.appointment_id, "released", self._clock.now())
        released = dataclasses.replace(a, status="released", hold_expires_at=None)
        await request_settlement(conn, released, capture=False, reason=reason)
        return released

    async def failed(self, conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID) -> bool:
        a = await repository.get_appointment(conn, business_id, appointment_id, for_update=True)
        if a is None or a.status != "held":
            return False
        await self.release(conn, a, RELEASED_DECLINED)
        return True

    async def sweep(self, pool: AsyncConnectionPool) -> int:
        """Releases every hold whose time is up; returns how many."""
        async with unit_of_work(pool) as conn:
            lapsed = await repository.lapsed_holds(conn, self._clock.now(), SWEEP_BATCH)
            for a in lapsed:
                await self.release(conn, a, RELEASED_EXPIRED)
        if lapsed:
            log.info("holds_released", count=len(lapsed), reason=RELEASED_EXPIRED)
        return len(lapsed)


class AnnounceBooking(Protocol):
    async def __call__(self, conn: Conn, a: AppointmentRow, now: dt.datetime) -> None: ...


def _ids(deposit: billing_pb.Deposit | None) -> tuple[uuid.UUID, uuid.UUID]:
    if deposit is None:
        raise PermanentError("a deposit event without its deposit")
    try:
        return uuid.UUID(deposit.business_id), uuid.UUID(deposit.appointment_id)
    except ValueError as exc:
        raise PermanentError(f"bad ids in a deposit event: {exc}") from exc


def outcome_handlers(outcomes: HoldOutcomes) -> dict[str, Handler]:
    """billing's verdicts on deposits, consumed next to the read model (one consumer per service)."""

    async def authorized(conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        assert isinstance(data, billing_ev.DepositAuthorized)
        await outcomes.authorized(conn, *_ids(data.deposit))

    async def failed(conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        assert isinstance(data, billing_ev.DepositFailed)
        await outcomes.failed(conn, *_ids(data.deposit))

    return {DEPOSIT_AUTHORIZED: authorized, DEPOSIT_FAILED: failed}
