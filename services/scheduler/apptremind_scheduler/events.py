"""What the scheduler consumes: booking's reminder requests and cancellations, turned into jobs.

This is the only place that knows reminders exist, and only as callers of the generic engine: a request
becomes a job for `scheduler.reminder.due.v1` carrying the request itself as its payload.
"""

from __future__ import annotations

import uuid

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.events.booking import v1 as booking_ev
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded
from apptremind_platform.errors import DomainError
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import Handler, MessageProcessor, PermanentError

from . import metrics, repository, service

log = get_logger(__name__)

SOURCE = "scheduler"
# The consumer name in the inbox; the Kafka consumer group is the service name, also "scheduler".
CONSUMER = "scheduler"

REMINDER_REQUESTED = "booking.reminder.requested.v1"
REMINDER_CANCELLED = "booking.reminder.cancelled.v1"
REMINDER_DUE = "scheduler.reminder.due.v1"


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise PermanentError(f"{what} {value!r} is not a UUID") from exc


async def _reminder_requested(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, booking_ev.ReminderRequested)
    business_id = _uuid(data.business_id, "business_id")
    packed = AnyMessage.pack(data)
    try:
        job = service.new_job(
            business_id,
            data.idempotency_key,
            data.remind_at,
            REMINDER_DUE,
            data.appointment_id,
            packed.type_url,
            bytes(packed.value),
        )
    except DomainError as exc:
        raise PermanentError(f"reminder request cannot become a job: {exc.message}") from exc
    created = await repository.insert(conn, job)
    if created is not None:
        metrics.JOBS_SCHEDULED.labels("event").inc()
        return
    existing = await repository.get(conn, business_id, job.idempotency_key)
    # The same request delivered again, or a request whose cancel came first (its tombstone wins).
    log.info(
        "reminder_request_ignored",
        idempotency_key=job.idempotency_key,
        existing_state=existing.state if existing else "pruned",
        tombstone=bool(existing and existing.tombstone),
    )


async def _reminder_cancelled(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, booking_ev.ReminderCancelled)
    business_id = _uuid(data.business_id, "business_id")
    if not data.idempotency_key:
        raise PermanentError("booking.reminder.cancelled.v1 without an idempotency_key")
    outcome = await repository.cancel_or_tombstone(
        conn, business_id, data.idempotency_key, data.appointment_id or data.idempotency_key
    )
    if outcome in (repository.CANCELLED, "tombstone"):
        metrics.JOBS_CANCELLED.labels("event").inc()
    log.info("reminder_cancel", idempotency_key=data.idempotency_key, outcome=outcome)


HANDLERS: dict[str, Handler] = {
    REMINDER_REQUESTED: _reminder_requested,
    REMINDER_CANCELLED: _reminder_cancelled,
}


def reminder_processor(pool: AsyncConnectionPool) -> MessageProcessor:
    return MessageProcessor(consumer=CONSUMER, source=SOURCE, pool=pool, handlers=HANDLERS)
