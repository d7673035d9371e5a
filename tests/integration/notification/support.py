"""Shared helpers of the notification tests: a real gRPC booking servicer standing in for booking-service
(the contract's three RPCs, with state the test controls), reminder and booking events as the scheduler and
booking-service produce them, and error assertions."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest

from apptremind_gen.apptremind.booking import v1 as booking_pb
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.billing import v1 as billing_events
from apptremind_gen.apptremind.events.booking import v1 as booking_events
from apptremind_gen.apptremind.events.scheduler import v1 as scheduler_events
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_notification.booking_client import BOOKING_SERVICE
from apptremind_notification.consumers import reminder_job
from apptremind_notification.dispatch import Job
from apptremind_platform.envelope import Event, decode, encode, headers_for
from apptremind_platform.grpc_bridge import bind_service
from apptremind_platform.processing import Incoming
from tests.fixtures.db import ServiceDb

# Monday 2030-06-03 06:00 UTC (08:00 in Berlin).
NOW = dt.datetime(2030, 6, 3, 6, 0, tzinfo=dt.UTC)
SMS_TOKEN = "test-sms-auth-token"


@dataclass
class Appointment:
    business_id: str
    appointment_id: str
    start: dt.datetime
    end: dt.datetime
    # The idempotency keys of the reminders booking still wants.
    current: set[str] = field(default_factory=set)
    status: str = "booked"


class BookingStub:
    """booking-service's reminder-status and self-service RPCs over real gRPC, keyed by manage token."""

    def __init__(self) -> None:
        self.appointments: dict[str, Appointment] = {}
        self.calls: list[tuple[str, str]] = []
        # The next N calls answer UNAVAILABLE (booking down).
        self.unavailable = 0

    def add(self, appointment: Appointment) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        self.appointments[token] = appointment
        return token

    async def _lookup(self, token: str, context: Any, method: str) -> Appointment:
        self.calls.append((method, token))
        if self.unavailable > 0:
            self.unavailable -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "booking is down")
        found = self.appointments.get(token)
        if found is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "invalid_self_service_token")
        assert found is not None
        return found

    def _pb(self, a: Appointment) -> booking_pb.Appointment:
        status = booking_pb.AppointmentStatus.BOOKED
        if a.status == "cancelled":
            status = booking_pb.AppointmentStatus.CANCELLED
        return booking_pb.Appointment(
            appointment_id=a.appointment_id,
            business_id=a.business_id,
            start_time=a.start,
            end_time=a.end,
            status=status,
        )

    async def get_reminder_status(
        self, request: booking_pb.GetReminderStatusRequest, context: Any
    ) -> booking_pb.GetReminderStatusResponse:
        a = await self._lookup(request.self_service_token, context, "GetReminderStatus")
        current = a.status == "booked" and request.idempotency_key in a.current
        return booking_pb.GetReminderStatusResponse(current=current, appointment=self._pb(a))

    async def confirm_appointment(
        self, request: booking_pb.ConfirmAppointmentRequest, context: Any
    ) -> booking_pb.ConfirmAppointmentResponse:
        a = await self._lookup(request.self_service_token, context, "ConfirmAppointment")
        return booking_pb.ConfirmAppointmentResponse(appointment=self._pb(a))

    async def cancel_appointment(
        self, request: booking_pb.CancelAppointmentRequest, context: Any
    ) -> booking_pb.CancelAppointmentResponse:
        a = await self._lookup(request.self_service_token, context, "CancelAppointment")
        if a.status != "booked":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "appointment_not_booked")
        a.status = "cancelled"
        return booking_pb.CancelAppointmentResponse(appointment=self._pb(a))


@asynccontextmanager
async def serving_booking(stub: BookingStub) -> AsyncIterator[str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((bind_service(stub, BOOKING_SERVICE),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@dataclass(frozen=True)
class Reminder:
    """One reminder the scheduler fires, and the booking it belongs to."""

    business_id: str
    appointment_id: str
    channel: str
    recipient: str
    remind_at: dt.datetime
    start: dt.datetime
    token: str
    key: str
    data: dict[str, str]

    def event(self, event_id: uuid.UUID | None = None) -> Event:
        requested = booking_events.ReminderRequested(
            business_id=self.business_id,
            appointment_id=self.appointment_id,
            remind_at=self.remind_at,
            channel=Channel.EMAIL if self.channel == "email" else Channel.SMS,
            recipient=self.recipient,
            template_data=self.data,
            idempotency_key=self.key,
        )
        due = scheduler_events.JobDue(
            job_id=str(uuid.uuid4()),
            business_id=self.business_id,
            idempotency_key=self.key,
            due_at=self.remind_at,
            payload=AnyMessage.pack(requested),
        )
        return Event("scheduler.reminder.due.v1", self.business_id, due, id=event_id or uuid.uuid4())


def reminder(
    booking: BookingStub,
    *,
    channel: str = "email",
    recipient: str | None = None,
    business_id: str | None = None,
    start: dt.datetime = NOW + dt.timedelta(days=1),
    remind_at: dt.datetime = NOW,
    locale: str = "en",
    quiet: tuple[str, str] = ("21:00", "08:00"),
    current: bool = True,
    extra: dict[str, str] | None = None,
) -> Reminder:
    business_id = business_id or str(uuid.uuid4())
    appointment_id = str(uuid.uuid4())
    key = f"{appointment_id}|{remind_at.isoformat()}|{channel}"
    end = start + dt.timedelta(minutes=30)
    token = booking.add(Appointment(business_id, appointment_id, start, end, {key} if current else set()))
    if recipient is None:
        recipient = f"kim-{appointment_id[:8]}@example.com" if channel == "email" else _phone()
    data = {
        "business_name": "Hair by Ana",
        "service_name": "Haircut",
        "staff_name": "Sam",
        "customer_name": "Kim",
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "business_time_zone": "Europe/Berlin",
        "customer_time_zone": "Europe/Berlin",
        "locale": locale,
        "quiet_hours_start": quiet[0],
        "quiet_hours_end": quiet[1],
        "appointment_id": appointment_id,
        "manage_token": token,
        **(extra or {}),
    }
    return Reminder(business_id, appointment_id, channel, recipient, remind_at, start, token, key, data)


def job_of(r: Reminder) -> Job:
    """The pipeline's job for a reminder, as consumers.reminder_job builds it from the due event."""
    return reminder_job(decode(r.event().topic, encode(r.event(), source="test")))


def _phone() -> str:
    return "+4915" + str(uuid.uuid4().int)[:9]


def booked_event(
    business_id: str, appointment_id: str, email: str, start: dt.datetime, *, rescheduled: bool = False
) -> Event:
    end = start + dt.timedelta(minutes=30)
    data = {
        "business_name": "Hair by Ana",
        "service_name": "Haircut",
        "customer_name": "Kim",
        "business_time_zone": "Europe/Berlin",
        "customer_time_zone": "Europe/Berlin",
        "locale": "de",
        "appointment_id": appointment_id,
    }
    if rescheduled:
        return Event(
            "booking.appointment.rescheduled.v1",
            business_id,
            booking_events.AppointmentRescheduled(
                business_id=business_id,
                appointment_id=appointment_id,
                start_time=start,
                end_time=end,
                customer_email=email,
                template_data=data,
            ),
        )
    return Event(
        "booking.appointment.booked.v1",
        business_id,
        booking_events.AppointmentBooked(
            business_id=business_id,
            appointment_id=appointment_id,
            start_time=start,
            end_time=end,
            customer_email=email,
            template_data=data,
        ),
    )


def incoming(event: Event, offset: int = 0) -> Incoming:
    """The record a consumer would receive for `event`, headers included."""
    headers = [(k, v.encode()) for k, v in headers_for(event).items()]
    return Incoming(
        event.topic, 0, offset, event.business_id.encode(), encode(event, source="test"), headers=headers
    )


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (code, reason), info.value.details()


# billing's seeded plans (services/billing/README.md): what billing.entitlements.changed.v1 carries for each.
PLAN_LIMITS: dict[str, dict[str, int]] = {
    "free": {"staff_seats": 1, "sms_per_month": 10, "custom_templates": 0},
    "pro": {"staff_seats": 5, "sms_per_month": 500, "custom_templates": 1},
    "business": {"staff_seats": -1, "sms_per_month": 5000, "custom_templates": 1},
}


def entitlements_changed(
    business_id: str, plan: str, *, limits: dict[str, int] | None = None, event_id: uuid.UUID | None = None
) -> Event:
    """billing.entitlements.changed.v1 as billing-service publishes it."""
    data = billing_events.EntitlementsChanged(
        business_id=business_id, plan=plan, limits=PLAN_LIMITS[plan] if limits is None else limits
    )
    return Event(
        "billing.entitlements.changed.v1", business_id, data, subject=business_id, id=event_id or uuid.uuid4()
    )


def entitle(db: ServiceDb, business_id: str, plan: str = "pro") -> None:
    """Gives the business a plan directly in notification's read model (tests that are not about plans)."""
    db.execute(
        "INSERT INTO business_entitlement (business_id, plan, limits, changed_at) "
        "VALUES (%s, %s, %s::jsonb, now()) ON CONFLICT (business_id) DO UPDATE "
        "SET plan = excluded.plan, limits = excluded.limits, changed_at = excluded.changed_at",
        (business_id, plan, json.dumps(PLAN_LIMITS[plan])),
    )


async def eventually(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Waits for a state the service reaches on its own (a consumed event); fails if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s}s")
        await asyncio.sleep(0.05)
