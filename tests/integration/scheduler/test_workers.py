"""The workers against real Postgres and a real broker: several at once emit every job exactly once, a
worker that dies after claiming loses nothing, and a failed publish is retried with backoff."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.db import open_pool
from apptremind_platform.topics import ensure_topics
from apptremind_scheduler.bootstrap import build_spec
from apptremind_scheduler.producer import AsyncProducer
from apptremind_scheduler.wakeup import Wakeup
from apptremind_scheduler.worker import Worker
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import ReadGaveUp, Record
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.scheduler.support import (
    DUE_TOPIC,
    due_events,
    emitted_per_job,
    eventually,
    fast_engine,
    read_due,
)

PAYLOAD = AnyMessage.pack(
    ReminderCancelled(business_id="payload", appointment_id="kept", idempotency_key="as is")
)


def insert_due_jobs(db: ServiceDb, business_id: str, count: int, in_seconds: float = 0.0) -> None:
    """Jobs falling due together, written straight to the table (the RPC path is tested elsewhere)."""
    db.execute(
        """
        INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, payload_type_url, payload,
                         next_attempt_at)
        SELECT gen_random_uuid(), %s, 'job-' || i, t, %s, 'key-' || (i %% 50), %s, %s, t
        FROM generate_series(1, %s) AS i, (SELECT now() + make_interval(secs => %s) AS t) AS due
        """,
        (business_id, DUE_TOPIC, PAYLOAD.type_url, bytes(PAYLOAD.value), count, in_seconds),
    )


def missing_jobs(
    db: ServiceDb, business_id: str, records: list[Record], broker_log: Path, bootstrap: str
) -> str:
    """What a failed read-back lacked: the jobs without an event, as the table has them, what the broker
    holds per partition against what was read, and the end of the broker's log (the test's working
    directory is gone once the session ends)."""
    emitted = emitted_per_job(records)
    rows = db.execute(
        "SELECT job_id, key, state, attempts, updated_at FROM job WHERE business_id = %s", (business_id,)
    )
    missing = [row for row in rows if str(row[0]) not in emitted]
    tail = broker_log.read_text(errors="replace").splitlines()[-60:] if broker_log.is_file() else []
    return (
        f"jobs without an event: {missing}\n{partition_counts(bootstrap, records)}\nbroker log tail:\n"
        + "\n".join(tail)
    )


def partition_counts(bootstrap: str, records: list[Record]) -> str:
    """Per partition of the due topic, the messages the broker holds (this test's broker holds only this
    test's) against those read back. More held than read: the read-back missed a message that is there.
    As many held as read: the missing job's event never reached the log although the job was completed.
    A job's partition is CRC32 of its key modulo the partitions (librdkafka's default partitioner)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"diagnosis-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(DUE_TOPIC, timeout=10).topics[DUE_TOPIC].partitions
        read = Counter(r.partition for r in records)
        lines = []
        for p in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(DUE_TOPIC, p), timeout=10)
            lines.append(f"partition {p}: broker holds offsets {low}..{high}, read {read[p]}")
        return "\n".join(lines)
    except Exception as exc:  # a diagnosis must not hide the failure it describes
        return f"partition offsets unavailable: {exc!r}"
    finally:
        consumer.close()


def state_counts(db: ServiceDb, business_id: str) -> dict[str, int]:
    rows = db.execute("SELECT state, count(*) FROM job WHERE business_id = %s GROUP BY state", (business_id,))
    return {str(state): int(str(n)) for state, n in rows}


def scheduler_db(postgres: PostgresServer) -> ServiceDb:
    return database_for(postgres, build_spec())


async def test_several_processes_emit_each_of_2000_jobs_exactly_once(
    postgres: PostgresServer, private_kafka: KafkaBroker, keys: SigningKeys
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    insert_due_jobs(db, business_id, 2000, in_seconds=3.0)
    async with AsyncExitStack() as stack:
        # Two service processes' worth of workers (two runtimes, two worker tasks each, distinct owners)
        # on one job table.
        for _ in range(2):
            spec = build_spec(fast_engine(scheduler_workers=2, scheduler_batch_size=50), consumers=False)
            await stack.enter_async_context(running_service(spec, db, private_kafka, jwks=keys.jwks))
        records = await asyncio.to_thread(
            read_due, private_kafka.bootstrap_servers, {business_id}, expected=2000, settle_s=3.0
        )
        await eventually(lambda: state_counts(db, business_id) == {"completed": 2000}, what="all completed")
    counts = emitted_per_job(records)
    assert len(counts) == 2000
    assert set(counts.values()) == {1}, f"{sum(c > 1 for c in counts.values())} jobs emitted more than once"
    assert {due_events(r).idempotency_key for r in records} == {f"job-{i}" for i in range(1, 2001)}
    assert all(due_events(r).payload == PAYLOAD for r in records)
    [(attempts,)] = db.execute("SELECT max(attempts) FROM job WHERE business_id = %s", (business_id,))
    assert attempts == 1


async def test_jobs_of_a_worker_that_died_after_claiming_are_emitted_once_after_the_lease(
    postgres: PostgresServer, private_kafka: KafkaBroker, keys: SigningKeys
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    insert_due_jobs(db, business_id, 300)
    # Only the doomed worker's claim has a short lease; the survivors keep the long default.
    doomed_engine = fast_engine(
        scheduler_lease_s=2.0, scheduler_publish_timeout_s=1.0, scheduler_batch_size=300
    )
    pool = await open_pool(db.dsn, max_size=2)
    producer = AsyncProducer(private_kafka.bootstrap_servers, 5.0)
    try:
        # The doomed worker claims the batch and dies before publishing anything: it never completes.
        doomed = Worker(pool, producer, doomed_engine, "doomed-worker", Wakeup())
        claimed = await doomed.claim()
    finally:
        producer.close()
        await pool.close()
    assert len(claimed) == 300
    rows = db.execute("SELECT DISTINCT state, lease_owner FROM job WHERE business_id = %s", (business_id,))
    assert rows == [("running", "doomed-worker")]

    spec = build_spec(fast_engine(), consumers=False)
    async with running_service(spec, db, private_kafka, jwks=keys.jwks):
        records = await asyncio.to_thread(
            read_due, private_kafka.bootstrap_servers, {business_id}, expected=300, settle_s=3.0
        )
        await eventually(lambda: state_counts(db, business_id) == {"completed": 300}, what="all completed")
    counts = emitted_per_job(records)
    assert len(counts) == 300 and set(counts.values()) == {1}
    # Each job was claimed twice: by the dead worker, then by the one that emitted it.
    assert db.execute("SELECT DISTINCT attempts FROM job WHERE business_id = %s", (business_id,)) == [(2,)]


async def test_a_failed_publish_is_retried_with_backoff_until_kafka_is_back(
    postgres: PostgresServer, workdir: Path, keys: SigningKeys
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    insert_due_jobs(db, business_id, 20)
    # A broker of this test's own, not running yet: the shared one must never be stopped.
    broker = KafkaBroker(
        workdir / f"kafka-retry-{uuid.uuid4().hex[:6]}",
        port=free_port(),
        controller_port=free_port(),
        log_file=workdir / "kafka-retry.log",
    )
    engine = fast_engine(
        scheduler_publish_timeout_s=1.0,
        scheduler_max_attempts=1000,
        scheduler_backoff_base_s=0.2,
        scheduler_backoff_max_s=1.0,
    )
    spec = build_spec(engine, consumers=False)
    try:
        async with running_service(spec, db, broker, jwks=keys.jwks):

            def retrying() -> bool:
                # Per job, from facts a claim leaves as they are (last_error, next_attempt_at): it failed
                # at least twice (claimed a third time, or back to scheduled after its second claim), was
                # backed off past its due time, and is neither completed nor given up. Asking for every
                # job to be waiting at one instant needs both workers idle at once, a window of
                # milliseconds between 1 s timeouts: one run in three waited 52 of the 60 s for it.
                [(ok,)] = db.execute(
                    "SELECT bool_and(last_error <> '' AND next_attempt_at > due_at "
                    "AND (attempts >= 3 OR (attempts >= 2 AND state = 'scheduled')) "
                    "AND state IN ('scheduled', 'running')) FROM job WHERE business_id = %s",
                    (business_id,),
                )
                return ok is True

            await eventually(retrying, timeout_s=60, what="every job failed twice and waits for a retry")
            [(error,)] = db.execute(
                "SELECT DISTINCT last_error FROM job WHERE business_id = %s LIMIT 1", (business_id,)
            )
            assert "timed out" in str(error).lower(), error
            await asyncio.to_thread(broker.start)
            await asyncio.to_thread(ensure_topics, broker.bootstrap_servers)
            await eventually(
                lambda: state_counts(db, business_id) == {"completed": 20}, timeout_s=90, what="all completed"
            )
            try:
                records = await asyncio.to_thread(
                    read_due, broker.bootstrap_servers, {business_id}, expected=20, settle_s=2.0
                )
            except ReadGaveUp as gave_up:
                raise AssertionError(
                    f"{gave_up}; "
                    + missing_jobs(
                        db, business_id, gave_up.records, broker.log_file, broker.bootstrap_servers
                    )
                ) from gave_up
    finally:
        await asyncio.to_thread(broker.stop)
    counts = emitted_per_job(records)
    assert len(counts) == 20 and set(counts.values()) == {1}
    assert db.execute("SELECT DISTINCT last_error FROM job WHERE business_id = %s", (business_id,)) == [("",)]


async def test_a_broker_that_stalls_mid_publish_loses_no_due_event(
    postgres: PostgresServer, workdir: Path, keys: SigningKeys
) -> None:
    """A frozen broker (a long GC pause, a stalled VM) makes batches time out while they are in flight: the
    broker may still write them, so a retry can emit a job twice (consumers dedupe by event id), but a job
    is never completed without its event on the topic."""
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    broker = KafkaBroker(
        workdir / f"kafka-stall-{uuid.uuid4().hex[:6]}",
        port=free_port(),
        controller_port=free_port(),
        log_file=workdir / "kafka-stall.log",
    )
    await asyncio.to_thread(broker.start)
    engine = fast_engine(
        scheduler_publish_timeout_s=1.0,
        scheduler_max_attempts=1000,
        scheduler_backoff_base_s=0.2,
        scheduler_backoff_max_s=1.0,
        scheduler_batch_size=50,
    )
    try:
        await asyncio.to_thread(ensure_topics, broker.bootstrap_servers)
        async with running_service(build_spec(engine, consumers=False), db, broker, jwks=keys.jwks):
            insert_due_jobs(db, business_id, 3000, in_seconds=0.5)
            # Six stalls longer than the publish timeout, with the workers publishing between them.
            for _ in range(6):
                await asyncio.sleep(0.4)
                with broker.paused():
                    await asyncio.sleep(1.6)
            await eventually(
                lambda: state_counts(db, business_id) == {"completed": 3000},
                timeout_s=120,
                what="all completed",
            )
            records = await asyncio.to_thread(
                read_due, broker.bootstrap_servers, {business_id}, expected=3000, settle_s=2.0
            )
    finally:
        await asyncio.to_thread(broker.stop)
    counts = emitted_per_job(records)
    assert len(counts) == 3000
    attempts = {
        str(job_id): int(str(n))
        for job_id, n in db.execute("SELECT job_id, attempts FROM job WHERE business_id = %s", (business_id,))
    }
    # The stalls did hit publishes in flight...
    assert max(attempts.values()) >= 2
    # ...and an event emitted twice belongs to a job whose first publish timed out.
    assert all(attempts[job_id] >= n for job_id, n in counts.items())


async def test_a_job_is_failed_after_its_last_attempt(
    postgres: PostgresServer, keys: SigningKeys, workdir: Path
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    insert_due_jobs(db, business_id, 3)
    nowhere = KafkaBroker(workdir / "kafka-never-started", port=free_port(), controller_port=free_port())
    engine = fast_engine(
        scheduler_publish_timeout_s=0.5, scheduler_max_attempts=2, scheduler_backoff_base_s=0.05
    )
    async with running_service(build_spec(engine, consumers=False), db, nowhere, jwks=keys.jwks):
        await eventually(lambda: state_counts(db, business_id) == {"failed": 3}, what="jobs failed")
    rows = db.execute(
        "SELECT DISTINCT attempts, lease_owner, last_error <> '' FROM job WHERE business_id = %s",
        (business_id,),
    )
    assert rows == [(2, None, True)]


async def test_stopping_finishes_the_batches_in_flight(
    postgres: PostgresServer, private_kafka: KafkaBroker, keys: SigningKeys
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    # A backlog far larger than what is done before the stop takes effect (a few batches).
    insert_due_jobs(db, business_id, 20000)
    spec = build_spec(fast_engine(scheduler_workers=3, scheduler_batch_size=100), consumers=False)
    async with running_service(spec, db, private_kafka, jwks=keys.jwks):
        # Stop while the backlog is being worked off: batches are claimed, in Kafka's hands, or completing.
        await eventually(
            lambda: state_counts(db, business_id).get("completed", 0) >= 300, what="work under way"
        )
    counts = state_counts(db, business_id)
    # Nothing is left claimed: each batch in flight was emitted and completed before the workers returned.
    assert "running" not in counts and counts.get("completed", 0) < 20000, counts
    done = {
        str(row[0])
        for row in db.execute(
            "SELECT job_id FROM job WHERE business_id = %s AND state = 'completed'", (business_id,)
        )
    }
    records = await asyncio.to_thread(
        read_due, private_kafka.bootstrap_servers, {business_id}, expected=len(done), settle_s=2.0
    )
    emitted = emitted_per_job(records)
    assert set(emitted) == done and set(emitted.values()) == {1}


async def test_finished_jobs_are_pruned_after_the_retention(
    postgres: PostgresServer, private_kafka: KafkaBroker, keys: SigningKeys
) -> None:
    db = scheduler_db(postgres)
    business_id = str(uuid.uuid4())
    insert_due_jobs(db, business_id, 5)
    db.execute(
        "INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, next_attempt_at) "
        "VALUES (gen_random_uuid(), %s, 'later', now() + interval '1 day', %s, 'k', now() + interval '1 day')",
        (business_id, DUE_TOPIC),
    )
    db.execute(
        "INSERT INTO job (job_id, business_id, idempotency_key, due_at, topic, key, state, attempts, "
        "next_attempt_at, last_error) VALUES (gen_random_uuid(), %s, 'broken', now(), %s, 'k', 'failed', 10, "
        "now(), 'gave up')",
        (business_id, DUE_TOPIC),
    )
    engine = fast_engine(scheduler_retention_s=1.0, scheduler_prune_interval_s=0.2)
    async with running_service(build_spec(engine, consumers=False), db, private_kafka, jwks=keys.jwks):
        await eventually(
            lambda: (
                sorted(
                    str(r[0])
                    for r in db.execute(
                        "SELECT idempotency_key FROM job WHERE business_id = %s", (business_id,)
                    )
                )
                == ["broken", "later"]
            ),
            what="completed jobs pruned",
        )
    # Still due later, or failed (kept for inspection): not pruned.
    assert state_counts(db, business_id) == {"scheduled": 1, "failed": 1}
