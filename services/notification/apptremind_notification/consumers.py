"""The notification pipeline's message handlers, as MessageProcessors the Faust agents in streams/ run.

- scheduler.reminder.due.v1 (JobDue carrying ReminderRequested) -> dispatch a reminder
- booking.appointment.booked.v1 / rescheduled.v1 -> a confirmation e-mail with invite.ics
- notification.sent.v1 / notification.failed.v1 -> the per-business, per-day delivery counters

Dispatch is a SideEffect: the provider call happens outside the inbox transaction (see dispatch.py). Its
delivery row, keyed by the idempotency key, already dedupes redeliveries, so the inbox is not read before
dispatching; the inbox claim after it still marks a redelivered message DUPLICATE. Given a `transact` (the
streams worker's GroupCommit), the claims share their commits with the dispatcher's other writes.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.events.booking import v1 as booking_events
from apptremind_gen.apptremind.events.notification import v1 as notification_events
from apptremind_gen.apptremind.events.scheduler import v1 as scheduler_events
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded
from apptremind_platform.processing import (
    Batched,
    MessageProcessor,
    PermanentError,
    RetryPolicy,
    SideEffect,
    Transactor,
)

from . import repository
from .dispatch import CHANNEL_FROM_PB, FAILED_TOPIC, SENT_TOPIC, Dispatcher, Job

DUE_TOPIC = "scheduler.reminder.due.v1"
BOOKED_TOPIC = "booking.appointment.booked.v1"
RESCHEDULED_TOPIC = "booking.appointment.rescheduled.v1"

DISPATCH_CONSUMER = "notification-dispatch"
CONFIRMATION_CONSUMER = "notification-confirmation"
STATUS_CONSUMER = "notification-status"
SOURCE = "notification"


def status_topics() -> tuple[str, ...]:
    return (SENT_TOPIC, FAILED_TOPIC)


def all_topics() -> tuple[str, ...]:
    """Every topic the pipeline's agents read."""
    return (DUE_TOPIC, BOOKED_TOPIC, RESCHEDULED_TOPIC, *status_topics())


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise PermanentError(f"{what} {value!r} is not a UUID") from None


def reminder_job(decoded: Decoded) -> Job:
    due = decoded.data
    if not isinstance(due, scheduler_events.JobDue):
        raise PermanentError(f"expected JobDue, got {type(due).__name__}")
    payload = due.payload.unpack() if due.payload else None
    if not isinstance(payload, booking_events.ReminderRequested):
        raise PermanentError(f"JobDue carries {type(payload).__name__}, not ReminderRequested")
    channel = CHANNEL_FROM_PB.get(int(payload.channel))
    if channel is None or not payload.recipient:
        raise PermanentError("the reminder has no channel or no recipient")
    return Job(
        business_id=_uuid(payload.business_id, "business_id"),
        appointment_id=_uuid(payload.appointment_id, "appointment_id"),
        kind="reminder",
        channel="email" if channel == "email" else "sms",
        recipient=payload.recipient,
        idempotency_key=payload.idempotency_key or due.idempotency_key,
        data=dict(payload.template_data),
        remind_at=payload.remind_at or due.due_at,
    )


def confirmation_job(decoded: Decoded) -> Job | None:
    """The confirmation e-mail for a booking or a reschedule; None when the customer gave no e-mail."""
    event = decoded.data
    if isinstance(event, booking_events.AppointmentBooked):
        key = f"{event.appointment_id}|confirmation|email"
    elif isinstance(event, booking_events.AppointmentRescheduled):
        # Each new time gets its own confirmation.
        start = event.start_time.isoformat() if event.start_time else decoded.envelope.id
        key = f"{event.appointment_id}|confirmation|{start}|email"
    else:
        raise PermanentError(f"no confirmation for {type(event).__name__}")
    if not event.customer_email:
        return None
    data = dict(event.template_data)
    # The event's own times win over the wording data (they are the appointment's, by definition).
    if event.start_time:
        data["start_time"] = event.start_time.isoformat()
    if event.end_time:
        data["end_time"] = event.end_time.isoformat()
    return Job(
        business_id=_uuid(event.business_id, "business_id"),
        appointment_id=_uuid(event.appointment_id, "appointment_id"),
        kind="confirmation",
        channel="email",
        recipient=event.customer_email,
        idempotency_key=key,
        data=data,
    )


def dispatch_processor(
    pool: AsyncConnectionPool,
    dispatcher: Dispatcher,
    policy: RetryPolicy | None = None,
    transact: Transactor | None = None,
) -> MessageProcessor:
    async def run(decoded: Decoded) -> None:
        await dispatcher.dispatch(reminder_job(decoded))

    return MessageProcessor(
        DISPATCH_CONSUMER,
        SOURCE,
        pool,
        {DUE_TOPIC: SideEffect(run, checks_inbox=False)},
        policy=policy or RetryPolicy(),
        transact=transact,
    )


def confirmation_processor(
    pool: AsyncConnectionPool,
    dispatcher: Dispatcher,
    policy: RetryPolicy | None = None,
    transact: Transactor | None = None,
) -> MessageProcessor:
    async def run(decoded: Decoded) -> None:
        job = confirmation_job(decoded)
        if job is not None:
            await dispatcher.dispatch(job)

    effect = SideEffect(run, checks_inbox=False)
    return MessageProcessor(
        CONFIRMATION_CONSUMER,
        SOURCE,
        pool,
        {BOOKED_TOPIC: effect, RESCHEDULED_TOPIC: effect},
        policy=policy or RetryPolicy(),
        transact=transact,
    )


def _status_count(decoded: Decoded) -> tuple[tuple[uuid.UUID, dt.date, str], str]:
    """The counter a status event adds one to: ((business, day, channel), outcome)."""
    event = decoded.data
    if isinstance(event, notification_events.NotificationSent):
        outcome = "sent"
    elif isinstance(event, notification_events.NotificationFailed):
        outcome = "failed"
    else:
        raise PermanentError(f"not a notification status: {type(event).__name__}")
    channel = CHANNEL_FROM_PB.get(int(event.channel))
    if channel is None:
        raise PermanentError("the status event has no channel")
    day = decoded.envelope.time.date() if decoded.envelope.time else None
    if day is None:
        raise PermanentError("the status event has no time")
    return (_uuid(event.business_id, "business_id"), day, channel), outcome


async def _count_status(conn: Conn, decoded: Decoded) -> None:
    await _count_statuses(conn, [decoded])


async def _count_statuses(conn: Conn, batch: Sequence[Decoded]) -> None:
    counts: dict[tuple[uuid.UUID, dt.date, str], collections.Counter[str]] = {}
    for decoded in batch:
        key, outcome = _status_count(decoded)
        counts.setdefault(key, collections.Counter())[outcome] += 1
    await repository.count_many(conn, counts)


def status_processor(pool: AsyncConnectionPool, transact: Transactor | None = None) -> MessageProcessor:
    """Counts sent and failed deliveries; a batch of status events is counted with one statement
    (`MessageProcessor.process_many`)."""
    counting = Batched(_count_status, _count_statuses)
    return MessageProcessor(
        STATUS_CONSUMER,
        SOURCE,
        pool,
        {SENT_TOPIC: counting, FAILED_TOPIC: counting},
        transact=transact,
    )
