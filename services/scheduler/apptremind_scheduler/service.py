"""The scheduler's use cases behind the RPCs and the consumers: validate, then read or change the job table.

Each function runs in the caller's unit of work and raises a DomainError (a gRPC status with a reason)
before changing anything when the input is bad.
"""

from __future__ import annotations

import datetime as dt
import uuid

from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_platform.db import Conn
from apptremind_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from apptremind_platform.topics import DLQ_SUFFIX, TOPICS

from . import repository
from .repository import JobRow, NewJob

MAX_KEY_LENGTH = 500
MAX_PAYLOAD_BYTES = 256 * 1024


def parse_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"invalid_{field}", f"{field} must be a UUID") from None


def idempotency_key(value: str) -> str:
    if not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            "invalid_idempotency_key", f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters"
        )
    return value


def due_topic(value: str) -> str:
    """A declared topic whose messages are JobDue events; anything else could never be emitted."""
    spec = TOPICS.get(value)
    if spec is None or value.endswith(DLQ_SUFFIX):
        raise InvalidArgument("unknown_topic", f"topic {value!r} is not a declared topic")
    if spec.payload is not JobDue:
        raise InvalidArgument(
            "topic_not_for_jobs", f"topic {value!r} carries {spec.payload.__name__}, not JobDue events"
        )
    return value


def new_job(
    business_id: uuid.UUID,
    key_value: str,
    due_at: dt.datetime | None,
    topic: str,
    partition_key: str,
    payload_type_url: str,
    payload: bytes,
) -> NewJob:
    key_value = idempotency_key(key_value)
    if due_at is None:
        raise InvalidArgument("missing_due_at", "due_at is required")
    if due_at.tzinfo is None:
        raise InvalidArgument("invalid_due_at", "due_at must carry a time zone")
    if len(partition_key) > MAX_KEY_LENGTH:
        raise InvalidArgument("invalid_key", f"key must be at most {MAX_KEY_LENGTH} characters")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument("payload_too_large", f"payload must be at most {MAX_PAYLOAD_BYTES} bytes")
    if payload and not payload_type_url:
        raise InvalidArgument("invalid_payload", "a payload needs its type_url")
    return NewJob(
        business_id=business_id,
        idempotency_key=key_value,
        due_at=due_at.astimezone(dt.UTC),
        topic=due_topic(topic),
        key=partition_key or key_value,
        payload_type_url=payload_type_url,
        payload=payload,
    )


def _same(existing: JobRow, job: NewJob) -> bool:
    return (
        existing.due_at == job.due_at
        and existing.topic == job.topic
        and existing.key == job.key
        and existing.payload_type_url == job.payload_type_url
        and bytes(existing.payload) == job.payload
    )


async def schedule(conn: Conn, job: NewJob) -> tuple[JobRow, bool]:
    """(the job, whether it was created). The same request again returns the existing job; a different
    request under a key already taken is refused."""
    created = await repository.insert(conn, job)
    if created is not None:
        return created, True
    existing = await repository.get(conn, job.business_id, job.idempotency_key)
    if existing is None:
        # The conflicting row was deleted (pruned) between the two statements: the caller may retry.
        raise FailedPrecondition("concurrent_change", "the job changed while scheduling; retry")
    if existing.tombstone:
        raise AlreadyExists(
            "job_cancelled", "a job under this idempotency_key was cancelled before it was scheduled"
        )
    if not _same(existing, job):
        raise AlreadyExists(
            "idempotency_key_reused", "idempotency_key is already used by a job with different details"
        )
    return existing, False


async def cancel(conn: Conn, business_id: uuid.UUID, key_value: str) -> JobRow:
    key_value = idempotency_key(key_value)
    cancelled = await repository.cancel_scheduled(conn, business_id, key_value)
    if cancelled is not None:
        return cancelled
    existing = await repository.get(conn, business_id, key_value)
    if existing is None:
        raise NotFound("job_not_found", "no job with this idempotency_key")
    if existing.state == repository.CANCELLED:
        return existing
    raise FailedPrecondition(
        f"job_{existing.state}", f"only a scheduled job can be cancelled; this one is {existing.state}"
    )


async def get(conn: Conn, business_id: uuid.UUID, key_value: str) -> JobRow:
    existing = await repository.get(conn, business_id, idempotency_key(key_value))
    if existing is None:
        raise NotFound("job_not_found", "no job with this idempotency_key")
    return existing
