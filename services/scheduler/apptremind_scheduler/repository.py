"""The job table as seen by the RPCs and the consumers: insert, cancel, read. Plain SQL, scoped by business.

The workers' statements (claim, complete, retry, reclaim, prune) live in queue.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from psycopg.rows import class_row

from apptremind_platform.db import Conn
from apptremind_platform.ids import new_id

SCHEDULED, RUNNING, COMPLETED, CANCELLED, FAILED = "scheduled", "running", "completed", "cancelled", "failed"
STATES = (SCHEDULED, RUNNING, COMPLETED, CANCELLED, FAILED)


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: uuid.UUID
    business_id: uuid.UUID
    idempotency_key: str
    due_at: dt.datetime
    topic: str
    key: str
    payload_type_url: str
    payload: bytes
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def tombstone(self) -> bool:
        """A cancel that arrived before its job: it holds the key so the job is never created."""
        return self.topic == ""


@dataclass(frozen=True, slots=True)
class NewJob:
    business_id: uuid.UUID
    idempotency_key: str
    due_at: dt.datetime
    topic: str
    key: str
    payload_type_url: str
    payload: bytes


_COLUMNS = (
    "job_id, business_id, idempotency_key, due_at, topic, key, payload_type_url, payload, state, attempts, "
    "next_attempt_at, last_error, created_at, updated_at"
)


async def insert(conn: Conn, job: NewJob) -> JobRow | None:
    """The new job, or None when the business already has a job (or tombstone) under this key."""
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        await cur.execute(
            f"""
            INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, payload_type_url,
                             payload, next_attempt_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (business_id, idempotency_key) DO NOTHING
            RETURNING {_COLUMNS}
            """,
            (
                new_id(),
                job.business_id,
                job.idempotency_key,
                job.due_at,
                job.topic,
                job.key,
                job.payload_type_url,
                job.payload,
                job.due_at,
            ),
        )
        return await cur.fetchone()


async def get(conn: Conn, business_id: uuid.UUID, idempotency_key: str, lock: bool = False) -> JobRow | None:
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM job WHERE business_id = %s AND idempotency_key = %s"
            + (" FOR UPDATE" if lock else ""),
            (business_id, idempotency_key),
        )
        return await cur.fetchone()


async def cancel_scheduled(conn: Conn, business_id: uuid.UUID, idempotency_key: str) -> JobRow | None:
    """Cancels the job if it is still scheduled; None if there is no such job or it is past that state."""
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        await cur.execute(
            f"""
            UPDATE job SET state = 'cancelled', updated_at = now()
            WHERE business_id = %s AND idempotency_key = %s AND state = 'scheduled'
            RETURNING {_COLUMNS}
            """,
            (business_id, idempotency_key),
        )
        return await cur.fetchone()


async def cancel_or_tombstone(conn: Conn, business_id: uuid.UUID, idempotency_key: str, key: str) -> str:
    """Cancels a scheduled job, or records a tombstone when the key is unknown; returns what happened:
    "cancelled", "tombstone", or the state of a job that was already past scheduled (left as it is)."""
    async with conn.cursor() as cur:
        await cur.execute(
            """
            INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, state, next_attempt_at)
            VALUES (%s, %s, %s, now(), '', %s, 'cancelled', now())
            ON CONFLICT (business_id, idempotency_key) DO UPDATE SET state = 'cancelled', updated_at = now()
                WHERE job.state = 'scheduled'
            RETURNING topic = ''
            """,
            (new_id(), business_id, idempotency_key, key),
        )
        row = await cur.fetchone()
        if row is not None:
            return "tombstone" if row[0] else CANCELLED
        await cur.execute(
            "SELECT state FROM job WHERE business_id = %s AND idempotency_key = %s",
            (business_id, idempotency_key),
        )
        existing = await cur.fetchone()
        return str(existing[0]) if existing else "unknown"


async def list_jobs(
    conn: Conn, business_id: uuid.UUID, state: str | None, after: uuid.UUID | None, limit: int
) -> list[JobRow]:
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        await cur.execute(
            f"""
            SELECT {_COLUMNS} FROM job
            WHERE business_id = %s
              AND (%s::text IS NULL OR state = %s::text)
              AND (%s::uuid IS NULL OR job_id > %s::uuid)
            ORDER BY job_id
            LIMIT %s
            """,
            (business_id, state, state, after, after, limit),
        )
        return await cur.fetchall()
