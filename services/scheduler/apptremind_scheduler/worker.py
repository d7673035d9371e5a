"""The workers: claim due jobs under a lease, emit each one's JobDue to its topic, then complete them.

claim -> emit -> complete, and what a crash at each step does, is docs/adr/0009-scheduler-claim-emit-complete.md.
In short: a job is completed only after Kafka acknowledged its event; a worker that dies before completing
leaves its jobs running until the lease expires, then any worker emits them again with the same event id
(the job id), which consumers dedupe. In normal operation every job is emitted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.background import BackgroundTask
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import (
    HEADER_CONTENT_TYPE,
    HEADER_ID,
    HEADER_TYPE,
    KAFKA_CONTENT_TYPE,
    Event,
)
from apptremind_platform.logs import get_logger

from . import metrics, queue
from .backoff import Backoff
from .due_encoding import encode_due
from .producer import AsyncProducer, Outgoing
from .queue import Claimed, Failure
from .settings import SchedulerSettings
from .wakeup import Wakeup

log = get_logger(__name__)

SOURCE = "scheduler"
_CONTENT_TYPE = KAFKA_CONTENT_TYPE.encode()
# After a claim finds nothing while jobs are overdue (other workers hold them), look again this soon.
_CONTENDED_SLEEP_S = 0.005
# Writing the outcome of a published batch is retried this often before the lease is left to expire.
_FINISH_ATTEMPTS = 5


def due_event(job: Claimed) -> Event:
    """The due event as a platform Event: the reference `outgoing` must encode identically (unit-tested)."""
    payload = (
        AnyMessage(type_url=job.payload_type_url, value=bytes(job.payload)) if job.payload_type_url else None
    )
    return Event(
        job.topic,
        str(job.business_id),
        JobDue(
            job_id=str(job.job_id),
            business_id=str(job.business_id),
            idempotency_key=job.idempotency_key,
            due_at=job.due_at,
            payload=payload,
        ),
        subject=job.idempotency_key,
        # The job id, not a fresh one: a job emitted again after a lost lease carries the same event id,
        # so consumers' inboxes drop the second copy.
        id=job.job_id,
        key=job.key,
    )


def outgoing(job: Claimed) -> Outgoing:
    """The Kafka record of a job's due event (see due_encoding.py for why not envelope.encode)."""
    value = encode_due(
        job.topic,
        job.job_id,
        job.business_id,
        job.idempotency_key,
        job.due_at,
        job.payload_type_url,
        bytes(job.payload),
        subject=job.idempotency_key,
        source=SOURCE,
    )
    job_id = str(job.job_id).encode()
    headers = [(HEADER_ID, job_id), (HEADER_TYPE, job.topic.encode()), (HEADER_CONTENT_TYPE, _CONTENT_TYPE)]
    return Outgoing(topic=job.topic, key=job.key.encode(), value=value, headers=headers)


class Worker:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        producer: AsyncProducer,
        settings: SchedulerSettings,
        owner: str,
        wakeup: Wakeup,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._settings = settings
        self.owner = owner
        self._wakeup = wakeup
        self._backoff = Backoff(
            settings.scheduler_backoff_base_s,
            settings.scheduler_backoff_max_s,
            settings.scheduler_max_attempts,
        )

    async def claim(self) -> list[Claimed]:
        async with unit_of_work(self._pool) as conn:
            jobs = await queue.claim(
                conn, self.owner, self._settings.scheduler_lease_s, self._settings.scheduler_batch_size
            )
        metrics.JOBS_CLAIMED.inc(len(jobs))
        return jobs

    async def run_once(self) -> int:
        """Claims one batch and sees it through; returns how many jobs it claimed."""
        jobs = await self.claim()
        if jobs:
            await self.emit_and_finish(jobs, time.monotonic())
        return len(jobs)

    async def emit_and_finish(self, jobs: Sequence[Claimed], claimed_monotonic: float) -> None:
        failures: list[Failure] = []
        sendable: list[Claimed] = []
        messages: list[Outgoing] = []
        for job in jobs:
            try:
                messages.append(outgoing(job))
                sendable.append(job)
            except Exception as exc:
                # A topic that no longer carries JobDue events cannot be fixed by retrying.
                failures.append(Failure(job.job_id, f"cannot encode the due event: {exc}", 0.0, True))
        try:
            errors = await self._producer.send(messages)
        except TimeoutError:
            errors = ["no delivery report within the publish timeout"] * len(messages)
        acked_monotonic = time.monotonic()
        completed: list[Claimed] = []
        for job, error in zip(sendable, errors, strict=True):
            if error is None:
                completed.append(job)
            else:
                failures.append(
                    Failure(
                        job.job_id,
                        error,
                        self._backoff.delay(job.attempts),
                        self._backoff.exhausted(job.attempts),
                    )
                )
        await self._finish(completed, failures)
        for job in completed:
            # The acknowledgement on the database clock: claim time plus the time since the claim.
            acked_at = job.claimed_at.timestamp() + (acked_monotonic - claimed_monotonic)
            metrics.LATENESS.observe(max(0.0, acked_at - job.due_at.timestamp()))

    async def _finish(self, completed: Sequence[Claimed], failures: Sequence[Failure]) -> None:
        for attempt in range(1, _FINISH_ATTEMPTS + 1):
            try:
                async with unit_of_work(self._pool) as conn:
                    done = (
                        await queue.complete(conn, self.owner, [j.job_id for j in completed])
                        if completed
                        else 0
                    )
                    retried = await queue.retry_or_fail(conn, self.owner, failures) if failures else 0
                break
            except Exception as exc:
                if attempt == _FINISH_ATTEMPTS:
                    # The events are out; the jobs stay running and are emitted again after the lease
                    # expires (consumers dedupe by the event id).
                    log.error("finish_failed", error=repr(exc), jobs=len(completed) + len(failures))
                    return
                await asyncio.sleep(0.1 * 2**attempt)
        if done < len(completed) or retried < len(failures):
            log.warning(
                "lease_lost", owner=self.owner, completed=done, expected=len(completed), retried=retried
            )
        metrics.JOBS_EMITTED.inc(len(completed))
        gave_up = sum(1 for f in failures if f.give_up)
        metrics.JOBS_FAILED.inc(gave_up)
        metrics.JOBS_RETRIED.inc(len(failures) - gave_up)
        for f in failures:
            log.warning("job_publish_failed", job_id=str(f.job_id), error=f.error, gave_up=f.give_up)

    async def _idle_wait(self, stop: asyncio.Event) -> None:
        async with unit_of_work(self._pool) as conn:
            until_due = await queue.seconds_until_next_due(conn)
        poll = self._settings.scheduler_idle_poll_s
        wait = poll if until_due is None else min(poll, max(until_due, _CONTENDED_SLEEP_S))
        if not stop.is_set():
            await self._wakeup.wait(wait)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                claimed = await self.run_once()
                if claimed < self._settings.scheduler_batch_size:
                    await self._idle_wait(stop)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                log.warning("worker_round_failed", owner=self.owner, error=repr(exc), retry_in_s=delay)
                await self._wakeup.wait(delay)


async def maintain(
    pool: AsyncConnectionPool, settings: SchedulerSettings, wakeup: Wakeup, stop: asyncio.Event
) -> None:
    """Reclaims expired leases often and prunes finished jobs now and then; never takes the process down."""
    last_prune = time.monotonic()
    while not stop.is_set():
        try:
            async with unit_of_work(pool) as conn:
                reclaimed, failed = await queue.reclaim_expired(conn, settings.scheduler_max_attempts)
            if reclaimed or failed:
                metrics.JOBS_RECLAIMED.inc(reclaimed)
                metrics.JOBS_FAILED.inc(failed)
                log.warning("leases_expired", reclaimed=reclaimed, failed=failed)
                wakeup.notify()
            if time.monotonic() - last_prune >= settings.scheduler_prune_interval_s:
                last_prune = time.monotonic()
                async with unit_of_work(pool) as conn:
                    pruned = await queue.prune(conn, settings.scheduler_retention_s)
                metrics.JOBS_PRUNED.inc(pruned)
        except Exception as exc:
            log.warning("maintenance_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.scheduler_reclaim_interval_s)


def owner_prefix() -> str:
    """Identifies this process in lease_owner (host, pid, and a nonce against pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def engine(
    pool: AsyncConnectionPool, settings: SchedulerSettings, bootstrap_servers: str, wakeup: Wakeup
) -> BackgroundTask:
    """The process's workers and their housekeeping, sharing one producer. On stop each worker finishes
    the batch it holds (emit and complete) before the producer is flushed and closed."""

    async def run(stop: asyncio.Event) -> None:
        producer = AsyncProducer(bootstrap_servers, settings.scheduler_publish_timeout_s)
        prefix = owner_prefix()
        workers = [
            Worker(pool, producer, settings, f"{prefix}/{i}", wakeup)
            for i in range(settings.scheduler_workers)
        ]
        tasks = [
            asyncio.create_task(w.run(stop), name=f"scheduler-worker-{i}") for i, w in enumerate(workers)
        ]
        tasks.append(
            asyncio.create_task(maintain(pool, settings, wakeup, stop), name="scheduler-maintenance")
        )
        log.info("scheduler_workers_started", workers=len(workers), owner=prefix)
        try:
            await stop.wait()
            wakeup.notify()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.to_thread(producer.close)
            log.info("scheduler_workers_stopped", owner=prefix)

    return run
