"""Scheduler benchmarks (issue 5): due jobs -> acknowledged due events on Kafka, and lateness.

1. Throughput: N jobs already due are committed at once; the clock runs until the last one is completed
   (a job completes only after Kafka acknowledged its event). Kafka is then read back: every job's event
   once, by job id.
2. Lateness: jobs falling due at a steady rate (default 1,000/s for 20 s), scheduled ahead as reminders
   are. Lateness = the due event's Kafka record timestamp (set when the worker produced it) - due_at.

The scheduler runs in this process as its service process would (ServiceRuntime, its workers as the
background task), on its own database. Run standalone at a small size:
`uv run python -m tests.bench.scheduler_bench --jobs 5000 --seconds 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.booking.v1 import ReminderRequested
from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.envelope import decode
from apptremind_platform.service import ServiceRuntime
from apptremind_platform.topics import ensure_topics
from apptremind_scheduler.bootstrap import build_spec
from apptremind_scheduler.settings import SchedulerSettings
from tests.fixtures.db import ServiceDb
from tests.fixtures.services import database_for, settings_for
from tests.fixtures.tokens import SigningKeys

TOPIC = "scheduler.reminder.due.v1"


@dataclass(frozen=True)
class SchedulerResult:
    workers: int
    batch_size: int
    jobs: int
    seconds: float
    per_second: float
    emitted: int
    duplicates: int
    lost: int
    lateness_jobs: int
    lateness_rate: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    lateness_duplicates: int
    lateness_lost: int
    payload_bytes: int


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def payload() -> AnyMessage:
    """A realistic reminder request (what booking schedules), packed as the job's payload."""
    return AnyMessage.pack(
        ReminderRequested(
            business_id=str(uuid.uuid4()),
            appointment_id=str(uuid.uuid4()),
            remind_at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
            channel=Channel.EMAIL,
            recipient="customer@example.com",
            template_data={
                "business_name": "Salon Bench",
                "service_name": "Cut",
                "staff_name": "Sam",
                "customer_name": "Ada",
                "start_time": "2031-01-02T09:00:00Z",
                "local_start": "2031-01-02T10:00:00+01:00",
                "business_time_zone": "Europe/Berlin",
                "locale": "de-DE",
            },
            idempotency_key="appt|2031-01-01T00:00:00Z|email",
        )
    )


def insert_jobs(db: ServiceDb, business_id: str, count: int, start_in_s: float, spacing_s: float) -> None:
    """Commits `count` jobs, the i-th due at now + start_in_s + i * spacing_s (database clock)."""
    p = payload()
    db.execute(
        """
        INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, payload_type_url, payload,
                         next_attempt_at)
        SELECT gen_random_uuid(), %s, 'bench-' || i, t0 + i * make_interval(secs => %s), %s,
               'appt-' || (i %% 5000), %s, %s, t0 + i * make_interval(secs => %s)
        FROM generate_series(0, %s - 1) AS i, (SELECT now() + make_interval(secs => %s) AS t0) AS base
        """,
        (business_id, spacing_s, TOPIC, p.type_url, bytes(p.value), spacing_s, count, start_in_s),
    )


def completed(db: ServiceDb, business_id: str) -> int:
    [(n,)] = db.execute(
        "SELECT count(*) FROM job WHERE business_id = %s AND state = 'completed'", (business_id,)
    )
    return int(str(n))


def read_events(
    bootstrap: str, business_id: str, expected: int, timeout_s: float = 120.0
) -> list[tuple[JobDue, int]]:
    """(event, Kafka record timestamp in ms) for every due event of the business, read from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    out: list[tuple[JobDue, int]] = []
    deadline = time.monotonic() + timeout_s
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
            for msg in consumer.consume(10000, 0.2):
                if msg.error():
                    continue
                data = decode(TOPIC, msg.value()).data
                assert isinstance(data, JobDue)
                if data.business_id == business_id:
                    out.append((data, msg.timestamp()[1]))
            if quiet_until is None and len({e.job_id for e, _ in out}) >= expected:
                # Keep reading a little: duplicates would arrive late.
                quiet_until = time.monotonic() + 2.0
    finally:
        consumer.close()
    return out


async def wait_completed(db: ServiceDb, business_id: str, count: int, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(completed, db, business_id) >= count:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{count} jobs not completed within {timeout_s}s")


async def run_scheduler(
    pg: PostgresServer,
    kafka: KafkaBroker,
    work: Path,
    jobs: int = 50_000,
    rate: int = 1_000,
    seconds: int = 20,
    workers: int = 4,
    batch_size: int = 1_000,
) -> SchedulerResult:
    engine = SchedulerSettings(
        scheduler_workers=workers,
        scheduler_batch_size=batch_size,
        scheduler_idle_poll_s=0.1,
        scheduler_lease_s=60.0,
    )
    spec = build_spec(engine, consumers=False)
    db = database_for(pg, spec)
    keys = SigningKeys()
    runtime = ServiceRuntime(spec, settings_for(spec, db, kafka, db_pool_max=workers + 6), jwks=keys.jwks)
    await runtime.start()
    try:
        # Warm-up: the producer connects and gets its idempotence id before anything is measured.
        warm = str(uuid.uuid4())
        await asyncio.to_thread(insert_jobs, db, warm, 100, 0.0, 0.0)
        await wait_completed(db, warm, 100, 60)

        # 1. Throughput: all jobs due at once.
        business = str(uuid.uuid4())
        started = time.perf_counter()
        await asyncio.to_thread(insert_jobs, db, business, jobs, 0.0, 0.0)
        committed = time.perf_counter()
        finished = await wait_completed(db, business, jobs, 600)
        took = finished - committed
        events = await asyncio.to_thread(read_events, kafka.bootstrap_servers, business, jobs)
        per_job = Counter(e.job_id for e, _ in events)
        del started

        # 2. Lateness: `rate` jobs per second falling due for `seconds` seconds, scheduled ahead.
        steady = str(uuid.uuid4())
        total = rate * seconds
        await asyncio.to_thread(insert_jobs, db, steady, total, 3.0, 1.0 / rate)
        await wait_completed(db, steady, total, seconds + 120)
        steady_events = await asyncio.to_thread(read_events, kafka.bootstrap_servers, steady, total)
        steady_per_job = Counter(e.job_id for e, _ in steady_events)
        first: dict[str, float] = {}
        for event, ts_ms in steady_events:
            assert event.due_at is not None
            late = ts_ms - event.due_at.timestamp() * 1000.0
            first[event.job_id] = min(late, first.get(event.job_id, late))
        lateness = list(first.values())
    finally:
        await runtime.stop(0)
    return SchedulerResult(
        workers=workers,
        batch_size=batch_size,
        jobs=jobs,
        seconds=took,
        per_second=jobs / took,
        emitted=len(events),
        duplicates=sum(c - 1 for c in per_job.values()),
        lost=jobs - len(per_job),
        lateness_jobs=total,
        lateness_rate=rate,
        lateness_p50_ms=pct(lateness, 0.50),
        lateness_p99_ms=pct(lateness, 0.99),
        lateness_max_ms=max(lateness),
        lateness_duplicates=sum(c - 1 for c in steady_per_job.values()),
        lateness_lost=total - len(steady_per_job),
        payload_bytes=len(bytes(payload())),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apptremind-scheduler-bench-"))
    pg = PostgresServer(work / "pg", port=free_port(), durable=True)
    kafka = KafkaBroker(work / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    try:
        pg.start()
        kafka.start()
        ensure_topics(kafka.bootstrap_servers)
        result = asyncio.run(
            run_scheduler(pg, kafka, work, args.jobs, args.rate, args.seconds, args.workers, args.batch)
        )
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(result)


if __name__ == "__main__":
    main()
