"""The workers' statements on the job table. Every time comparison uses the database clock (now()), so
workers on hosts with skewed clocks agree on what is due and when a lease has expired.

now() (stable within a statement) rather than clock_timestamp() (volatile) keeps the partial indexes usable
for the due and lease scans; each statement runs in its own short transaction, so now() is the moment the
claim is made.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.rows import class_row

from apptremind_platform.db import Conn


@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: uuid.UUID
    business_id: uuid.UUID
    idempotency_key: str
    due_at: dt.datetime
    topic: str
    key: str
    payload_type_url: str
    payload: bytes
    # Attempts including this one.
    attempts: int
    lease_expires_at: dt.datetime
    # The database clock when the claim was made.
    claimed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: uuid.UUID
    error: str
    # Seconds until the next attempt; ignored when give_up.
    delay_s: float
    give_up: bool


_CLAIM = """
WITH due AS (
    SELECT job_id FROM job
    WHERE state = 'scheduled' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE job AS j
SET state = 'running', lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
    attempts = j.attempts + 1, updated_at = now()
FROM due
WHERE j.job_id = due.job_id
RETURNING j.job_id, j.business_id, j.idempotency_key, j.due_at, j.topic, j.key, j.payload_type_url, j.payload,
          j.attempts, j.lease_expires_at, now() AS claimed_at
"""

_COMPLETE = """
UPDATE job SET state = 'completed', lease_owner = NULL, lease_expires_at = NULL, last_error = '',
               updated_at = now()
WHERE job_id = ANY(%s) AND state = 'running' AND lease_owner = %s
"""

_RETRY = """
UPDATE job AS j
SET state = CASE WHEN f.give_up THEN 'failed' ELSE 'scheduled' END,
    next_attempt_at = CASE WHEN f.give_up THEN j.next_attempt_at
                           ELSE now() + make_interval(secs => f.delay_s) END,
    last_error = f.error, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
FROM unnest(%s::uuid[], %s::float8[], %s::text[], %s::bool[]) AS f(job_id, delay_s, error, give_up)
WHERE j.job_id = f.job_id AND j.state = 'running' AND j.lease_owner = %s
"""

# A job whose worker died mid-batch: claimable again at once, unless that claim was its last attempt.
_RECLAIM = """
WITH expired AS (
    SELECT job_id FROM job
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE job AS j
SET state = CASE WHEN j.attempts >= %(max_attempts)s THEN 'failed' ELSE 'scheduled' END,
    next_attempt_at = now(),
    last_error = 'lease of ' || j.lease_owner || ' expired before the job completed',
    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
FROM expired
WHERE j.job_id = expired.job_id
RETURNING j.state
"""

_NEXT_DUE = "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM job WHERE state = 'scheduled'"

_PRUNE = """
DELETE FROM job WHERE job_id IN (
    SELECT job_id FROM job
    WHERE state IN ('completed', 'cancelled') AND updated_at < now() - make_interval(secs => %s)
    LIMIT %s
)
"""


async def claim(conn: Conn, owner: str, lease_s: float, limit: int) -> list[Claimed]:
    async with conn.cursor(row_factory=class_row(Claimed)) as cur:
        await cur.execute(_CLAIM, {"limit": limit, "owner": owner, "lease": lease_s})
        return await cur.fetchall()


async def complete(conn: Conn, owner: str, job_ids: Sequence[uuid.UUID]) -> int:
    """Marks the owner's running jobs completed; a job whose lease was taken over is left alone."""
    async with conn.cursor() as cur:
        await cur.execute(_COMPLETE, (list(job_ids), owner))
        return cur.rowcount


async def retry_or_fail(conn: Conn, owner: str, failures: Sequence[Failure]) -> int:
    async with conn.cursor() as cur:
        await cur.execute(
            _RETRY,
            (
                [f.job_id for f in failures],
                [f.delay_s for f in failures],
                [f.error[:2000] for f in failures],
                [f.give_up for f in failures],
                owner,
            ),
        )
        return cur.rowcount


async def reclaim_expired(conn: Conn, max_attempts: int, limit: int = 5000) -> tuple[int, int]:
    """(jobs made claimable again, jobs failed because that was their last attempt)."""
    async with conn.cursor() as cur:
        await cur.execute(_RECLAIM, {"limit": limit, "max_attempts": max_attempts})
        states = [row[0] for row in await cur.fetchall()]
    failed = states.count("failed")
    return len(states) - failed, failed


async def seconds_until_next_due(conn: Conn) -> float | None:
    """Seconds (database clock) until the earliest scheduled job is due; negative if overdue; None if none."""
    async with conn.cursor() as cur:
        await cur.execute(_NEXT_DUE)
        row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def prune(conn: Conn, retention_s: float, limit: int = 10000) -> int:
    async with conn.cursor() as cur:
        await cur.execute(_PRUNE, (retention_s, limit))
        return cur.rowcount
