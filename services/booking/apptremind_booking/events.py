"""What the booking-service consumes (the business read model) and publishes (through the outbox).

Business events carry the whole current state of what changed, so every handler is an idempotent upsert:
a replay, or a message delivered twice, leaves the read model as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.business import v1 as business_pb
from apptremind_gen.apptremind.common.v1 import Channel as PbChannel
from apptremind_gen.apptremind.common.v1 import Money
from apptremind_gen.apptremind.events.booking import v1 as ev
from apptremind_gen.apptremind.events.business import v1 as business_ev
from apptremind_platform import outbox
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded, Event
from apptremind_platform.processing import Handler, MessageProcessor, PermanentError

from . import repository

SOURCE = "booking"
# The consumer name in the inbox; the Kafka consumer group is the service name, also "booking".
CONSUMER = "booking"

BUSINESS_CREATED = "business.created.v1"
BUSINESS_UPDATED = "business.updated.v1"
STAFF_CHANGED = "business.staff.changed.v1"
SCHEDULE_CHANGED = "business.schedule.changed.v1"
DATE_OVERRIDE_ADDED = "business.date_override.added.v1"
SERVICE_CHANGED = "business.service.changed.v1"
REMINDER_POLICY_CHANGED = "business.reminder_policy.changed.v1"

APPOINTMENT_BOOKED = "booking.appointment.booked.v1"
APPOINTMENT_RESCHEDULED = "booking.appointment.rescheduled.v1"
APPOINTMENT_CANCELLED = "booking.appointment.cancelled.v1"
APPOINTMENT_COMPLETED = "booking.appointment.completed.v1"
APPOINTMENT_NO_SHOW = "booking.appointment.no_show.v1"
REMINDER_REQUESTED = "booking.reminder.requested.v1"
REMINDER_CANCELLED = "booking.reminder.cancelled.v1"
DEPOSIT_SETTLEMENT_REQUESTED = "booking.deposit.settlement_requested.v1"

CHANNELS_TO_PB = {"email": PbChannel.EMAIL, "sms": PbChannel.SMS}
_CHANNELS = {int(PbChannel.EMAIL): "email", int(PbChannel.SMS): "sms"}
_KINDS = {
    int(business_pb.DateOverrideKind.TIME_OFF): "time_off",
    int(business_pb.DateOverrideKind.HOLIDAY): "holiday",
    int(business_pb.DateOverrideKind.EXTRA_HOURS): "extra_hours",
}


async def publish(conn: Conn, event: Event) -> None:
    """Write the event in the caller's transaction; the outbox relay publishes it after commit."""
    await outbox.add(conn, event, source=SOURCE)


# --- consumed: the read model ---------------------------------------------------------------------------


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        # Retrying cannot fix a malformed id: straight to the DLQ.
        raise PermanentError(f"{what} {value!r} is not a UUID") from exc


def _minute(text: str) -> int:
    hours, _, minutes = text.partition(":")
    try:
        value = int(hours) * 60 + int(minutes)
    except ValueError as exc:
        raise PermanentError(f"bad wall-clock time {text!r}") from exc
    if not 0 <= value <= 1440:
        raise PermanentError(f"bad wall-clock time {text!r}")
    return value


def _time(text: str) -> dt.time | None:
    if not text:
        return None
    minute = _minute(text)
    if minute == 1440:
        raise PermanentError("quiet hours cannot be 24:00")
    return dt.time(minute // 60, minute % 60)


async def _business_created(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.BusinessCreated)
    await repository.upsert_business(
        conn, _uuid(data.business_id, "business_id"), data.name, data.slug, data.time_zone, data.currency
    )


async def _business_updated(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.BusinessUpdated)
    if data.business is None:
        raise PermanentError("business.updated.v1 without a business")
    b = data.business
    await repository.upsert_business(
        conn, _uuid(b.business_id, "business_id"), b.name, b.slug, b.time_zone, b.currency
    )


async def _staff_changed(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.StaffChanged)
    if data.staff is None:
        raise PermanentError("business.staff.changed.v1 without staff")
    s = data.staff
    await repository.upsert_staff(
        conn, _uuid(s.business_id, "business_id"), _uuid(s.staff_id, "staff_id"), s.name, s.active
    )


async def _schedule_changed(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.ScheduleChanged)

    def rows(items: list[business_pb.WeeklyInterval]) -> list[tuple[int, int, int]]:
        return [(i.weekday, _minute(i.start_time), _minute(i.end_time)) for i in items]

    await repository.replace_schedule(
        conn,
        _uuid(data.business_id, "business_id"),
        _uuid(data.staff_id, "staff_id"),
        rows(data.hours),
        rows(data.breaks),
    )


async def _date_override_added(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.DateOverrideAdded)
    o = data.date_override
    if o is None or o.start_time is None or o.end_time is None:
        raise PermanentError("business.date_override.added.v1 without an override and its times")
    kind = _KINDS.get(int(o.kind))
    if kind is None:
        raise PermanentError(f"unknown date override kind {o.kind!r}")
    await repository.upsert_date_override(
        conn,
        _uuid(o.business_id, "business_id"),
        _uuid(o.override_id, "override_id"),
        _uuid(o.staff_id, "staff_id") if o.staff_id else None,
        kind,
        o.start_time,
        o.end_time,
    )


async def _service_changed(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.ServiceChanged)
    s = data.service
    if s is None:
        raise PermanentError("business.service.changed.v1 without a service")
    await repository.upsert_service(
        conn,
        repository.ServiceRow(
            business_id=_uuid(s.business_id, "business_id"),
            service_id=_uuid(s.service_id, "service_id"),
            name=s.name,
            duration_minutes=s.duration_minutes,
            buffer_before_minutes=s.buffer_before_minutes,
            buffer_after_minutes=s.buffer_after_minutes,
            active=s.active,
            staff_ids=tuple(_uuid(i, "staff_id") for i in s.staff_ids),
            deposit_minor=s.deposit.amount_minor if s.deposit else 0,
            deposit_currency=s.deposit.currency if s.deposit else "",
            free_cancellation_hours=s.free_cancellation_hours,
        ),
    )


async def _reminder_policy_changed(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, business_ev.ReminderPolicyChanged)
    p = data.policy
    if p is None:
        raise PermanentError("business.reminder_policy.changed.v1 without a policy")
    channels = [_CHANNELS[int(c)] for c in p.channels if int(c) in _CHANNELS]
    await repository.upsert_reminder_policy(
        conn,
        _uuid(p.business_id, "business_id"),
        list(p.offsets_minutes),
        channels,
        _time(p.quiet_hours_start),
        _time(p.quiet_hours_end),
    )


HANDLERS: dict[str, Handler] = {
    BUSINESS_CREATED: _business_created,
    BUSINESS_UPDATED: _business_updated,
    STAFF_CHANGED: _staff_changed,
    SCHEDULE_CHANGED: _schedule_changed,
    DATE_OVERRIDE_ADDED: _date_override_added,
    SERVICE_CHANGED: _service_changed,
    REMINDER_POLICY_CHANGED: _reminder_policy_changed,
}


def read_model_processor(
    pool: AsyncConnectionPool,
    more: dict[str, Handler] | None = None,
) -> MessageProcessor:
    """The service's one consumer: the read model, plus `more` handlers (the deposit saga's)."""
    return MessageProcessor(consumer=CONSUMER, source=SOURCE, pool=pool, handlers=HANDLERS | (more or {}))


# --- published -------------------------------------------------------------------------------------------


def appointment_booked(a: repository.AppointmentRow, template_data: dict[str, str]) -> Event:
    return Event(
        APPOINTMENT_BOOKED,
        str(a.business_id),
        ev.AppointmentBooked(
            business_id=str(a.business_id),
            appointment_id=str(a.appointment_id),
            staff_id=str(a.staff_id),
            service_id=str(a.service_id),
            start_time=a.start_time,
            end_time=a.end_time,
            customer_email=a.customer_email,
            customer_phone=a.customer_phone,
            template_data=template_data,
        ),
        subject=str(a.appointment_id),
    )


def appointment_rescheduled(
    a: repository.AppointmentRow, previous_start: dt.datetime, template_data: dict[str, str]
) -> Event:
    return Event(
        APPOINTMENT_RESCHEDULED,
        str(a.business_id),
        ev.AppointmentRescheduled(
            business_id=str(a.business_id),
            appointment_id=str(a.appointment_id),
            staff_id=str(a.staff_id),
            previous_start_time=previous_start,
            start_time=a.start_time,
            end_time=a.end_time,
            customer_email=a.customer_email,
            customer_phone=a.customer_phone,
            template_data=template_data,
        ),
        subject=str(a.appointment_id),
    )


def appointment_cancelled(a: repository.AppointmentRow, cancelled_by: str, reason: str) -> Event:
    return Event(
        APPOINTMENT_CANCELLED,
        str(a.business_id),
        ev.AppointmentCancelled(
            business_id=str(a.business_id),
            appointment_id=str(a.appointment_id),
            cancelled_by=cancelled_by,
            reason=reason,
        ),
        subject=str(a.appointment_id),
    )


def appointment_completed(a: repository.AppointmentRow) -> Event:
    return Event(
        APPOINTMENT_COMPLETED,
        str(a.business_id),
        ev.AppointmentCompleted(business_id=str(a.business_id), appointment_id=str(a.appointment_id)),
        subject=str(a.appointment_id),
    )


def appointment_no_show(a: repository.AppointmentRow) -> Event:
    return Event(
        APPOINTMENT_NO_SHOW,
        str(a.business_id),
        ev.AppointmentNoShow(business_id=str(a.business_id), appointment_id=str(a.appointment_id)),
        subject=str(a.appointment_id),
    )


def reminder_requested(
    a: repository.AppointmentRow,
    remind_at: dt.datetime,
    channel: str,
    recipient: str,
    template_data: dict[str, str],
    key: str,
) -> Event:
    return Event(
        REMINDER_REQUESTED,
        str(a.business_id),
        ev.ReminderRequested(
            business_id=str(a.business_id),
            appointment_id=str(a.appointment_id),
            remind_at=remind_at,
            channel=CHANNELS_TO_PB[channel],
            recipient=recipient,
            template_data=template_data,
            idempotency_key=key,
        ),
        subject=str(a.appointment_id),
    )


def reminder_cancelled(a: repository.AppointmentRow, key: str) -> Event:
    return Event(
        REMINDER_CANCELLED,
        str(a.business_id),
        ev.ReminderCancelled(
            business_id=str(a.business_id), appointment_id=str(a.appointment_id), idempotency_key=key
        ),
        subject=str(a.appointment_id),
    )


def deposit_settlement(a: repository.AppointmentRow, capture: bool, reason: str) -> Event:
    return Event(
        DEPOSIT_SETTLEMENT_REQUESTED,
        str(a.business_id),
        ev.DepositSettlementRequested(
            business_id=str(a.business_id),
            appointment_id=str(a.appointment_id),
            action=ev.DepositAction.CAPTURE if capture else ev.DepositAction.RELEASE,
            reason=reason,
            amount=Money(amount_minor=a.deposit_minor, currency=a.deposit_currency),
        ),
        subject=str(a.appointment_id),
    )
