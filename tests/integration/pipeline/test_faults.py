"""Faults lose nothing and duplicate nothing, counted at the real SMTP sink.

The pipeline under test: reminder requests in booking's outbox → relay → Kafka → scheduler-service
(consumer, jobs, workers) → Kafka → the streams worker (a real Faust process) → SMTP. Booking's pre-send
check answers from a small real gRPC server (tests/integration/notification/support.py), so thousands of
reminders need no thousands of bookings. Each test runs its own Kafka broker, because one of them kills it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_platform.topics import ensure_topics
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import warm_up_producer_ids
from tests.fixtures.pipeline import Pipeline, request_reminders, running_pipeline
from tests.fixtures.streams import StreamsWorker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    broker.start()
    try:
        ensure_topics(broker.bootstrap_servers)
        warm_up_producer_ids(broker.bootstrap_servers)
        yield broker
    finally:
        broker.stop()


async def delivered(sink: SmtpSink, want: set[str], worker: StreamsWorker, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not want <= {to for m in sink.messages() for to in m.envelope_to}:
        assert worker.process.returncode is None, worker.log_tail()
        if asyncio.get_running_loop().time() > deadline:
            got = {to for m in sink.messages() for to in m.envelope_to}
            raise AssertionError(f"{len(want - got)} of {len(want)} never arrived\n{worker.log_tail()}")
        await asyncio.sleep(0.5)


async def some_sent(sink: SmtpSink, worker: StreamsWorker, timeout_s: float) -> int:
    """How many mails are at the sink once there is at least one."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (sent := len(sink.messages())):
        assert worker.process.returncode is None, worker.log_tail()
        assert asyncio.get_running_loop().time() < deadline, f"nothing sent\n{worker.log_tail()}"
        await asyncio.sleep(0.1)
    return sent


def counts(sink: SmtpSink) -> collections.Counter[str]:
    return collections.Counter(to for m in sink.messages() for to in m.envelope_to)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def test_killing_the_broker_mid_run_loses_and_duplicates_no_reminder(
    postgres: PostgresServer, broker: KafkaBroker, stack: AsyncExitStack, tmp_path: Path
) -> None:
    sink = stack.enter_context(SmtpSink())
    pipeline = await running_pipeline(stack, postgres, broker, sink, tmp_path)
    # 2,000 reminders falling due over 20 seconds, starting shortly.
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    due = [start + dt.timedelta(milliseconds=10 * i) for i in range(2000)]
    recipients = await request_reminders(pipeline, due)

    # Mid-run: some reminders sent, most still ahead (due over 20 s). Waiting for the first mail rather than
    # a fixed time: on a loaded machine the pipeline may not have sent anything yet after a few seconds.
    sent_before = await some_sent(sink, pipeline.worker, timeout_s=120)
    await asyncio.to_thread(broker.kill)
    await asyncio.sleep(5)
    await asyncio.to_thread(broker.start)

    await delivered(sink, set(recipients), pipeline.worker, timeout_s=300)
    await asyncio.sleep(5)  # late duplicates, if any, would arrive now
    seen = counts(sink)
    assert 0 < sent_before < len(recipients), sent_before  # the kill really happened mid-run
    assert set(seen) == set(recipients)
    assert [r for r, n in seen.items() if n > 1] == []


async def test_an_smtp_server_failing_half_the_time_still_gets_everything_once(
    postgres: PostgresServer, broker: KafkaBroker, stack: AsyncExitStack, tmp_path: Path
) -> None:
    sink = stack.enter_context(SmtpSink(fail_ratio=0.5, seed=7))
    pipeline = await running_pipeline(
        stack,
        postgres,
        broker,
        sink,
        tmp_path,
        # Enough attempts that 50% failures cannot exhaust them (0.5^30), with short backoff.
        APPTREMIND_DISPATCH_MAX_ATTEMPTS="30",
        APPTREMIND_DISPATCH_BASE_DELAY_S="0.02",
        APPTREMIND_DISPATCH_MAX_DELAY_S="0.2",
    )
    now = dt.datetime.now(dt.UTC)
    recipients = await request_reminders(
        pipeline, [now + dt.timedelta(milliseconds=5 * i) for i in range(300)]
    )

    await delivered(sink, set(recipients), pipeline.worker, timeout_s=300)
    await asyncio.sleep(3)
    seen = counts(sink)
    assert set(seen) == set(recipients)
    assert [r for r, n in seen.items() if n > 1] == []
    assert sink.rejected > 100  # the failures really happened and were retried


def scheduler_process(
    pipeline: Pipeline, broker: KafkaBroker, log: Path, group: str
) -> subprocess.Popen[bytes]:
    """scheduler-service as its own process (`python -m apptremind_scheduler.bootstrap`), so it can be killed."""
    env = {
        **os.environ,
        "APPTREMIND_DATABASE_URL": pipeline.scheduler_db.dsn,
        "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "APPTREMIND_GRPC_PORT": str(free_port()),
        "APPTREMIND_HTTP_PORT": str(free_port()),
        "APPTREMIND_CONSUMER_GROUP": group,
        "APPTREMIND_CONSUMER_OFFSET_RESET": "earliest",
        "APPTREMIND_SCHEDULER_WORKERS": "1",
        "APPTREMIND_SCHEDULER_BATCH_SIZE": "2000",
        "APPTREMIND_SCHEDULER_LEASE_S": "6",
        "APPTREMIND_SCHEDULER_PUBLISH_TIMEOUT_S": "5",
        "APPTREMIND_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "apptremind_scheduler.bootstrap"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def test_a_scheduler_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    postgres: PostgresServer, broker: KafkaBroker, stack: AsyncExitStack, tmp_path: Path
) -> None:
    sink = stack.enter_context(SmtpSink())
    pipeline = await running_pipeline(stack, postgres, broker, sink, tmp_path, with_scheduler=False)
    group = f"scheduler-{uuid.uuid4().hex[:6]}"
    first = scheduler_process(pipeline, broker, tmp_path / "scheduler.log", group)
    try:
        # 3,000 reminders due at one instant, every one a job before that instant: the worker claims 2,000
        # (its batch size) at once and is killed holding them.
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
        recipients = await request_reminders(pipeline, [due] * 3000)
        await until_jobs(pipeline.scheduler_db, 3000, timeout_s=120)
        assert dt.datetime.now(dt.UTC) < due, "the jobs were not all there before they fell due"
        # The broker is frozen from before the due time until the kill, so the claimed batch can be neither
        # published nor completed: however slowly this test gets to the kill, the batch is still held. (A
        # copy the dead worker sent may still be written once the broker thaws; the worker's inbox and the
        # delivery rows drop it, which the duplicate check below counts on.)
        with broker.paused():
            running = await until_jobs_running(pipeline.scheduler_db, timeout_s=120)
            first.kill()  # SIGKILL, mid-batch: no drain, no completion, leases left behind
            first.wait()
            [(left_running,)] = pipeline.scheduler_db.execute(
                "SELECT count(*) FROM job WHERE state = 'running'"
            )
    finally:
        if first.poll() is None:
            first.kill()

    second = scheduler_process(pipeline, broker, tmp_path / "scheduler.log", group)
    try:
        await delivered(sink, set(recipients), pipeline.worker, timeout_s=300)
        # Every mail can be out before the stranded batch's lease (6 s) expires: the broker may have written what
        # the killed scheduler sent once it thawed. Wait until the second one has reclaimed and emitted the batch
        # again, so that the check of the job states below is no race and its copies have had their chance to be
        # mailed.
        await until_all_completed(pipeline.scheduler_db, timeout_s=120)
        await asyncio.sleep(5)
    finally:
        second.terminate()
        second.wait(30)
    seen = counts(sink)
    # The kill stranded one whole claimed batch.
    assert (running, left_running) == (2000, 2000)
    assert set(seen) == set(recipients)
    assert [r for r, n in seen.items() if n > 1] == []
    # The stranded jobs were reclaimed after their lease expired, not lost.
    assert pipeline.scheduler_db.execute("SELECT count(*) FROM job WHERE state <> 'completed'") == [(0,)]


async def until_all_completed(db: ServiceDb, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        [(left,)] = db.execute("SELECT count(*) FROM job WHERE state <> 'completed'")
        if not left:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{left} jobs never completed"
        await asyncio.sleep(0.2)


async def until_jobs(db: ServiceDb, count: int, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (jobs := db.execute("SELECT count(*) FROM job")[0][0]) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {jobs} of {count} jobs were scheduled"
        await asyncio.sleep(0.1)


async def until_jobs_running(db: ServiceDb, timeout_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        [(running,)] = db.execute("SELECT count(*) FROM job WHERE state = 'running'")
        if running:
            return int(running)  # type: ignore[call-overload]
        assert asyncio.get_running_loop().time() < deadline, "the scheduler never claimed a batch"
        await asyncio.sleep(0.005)
