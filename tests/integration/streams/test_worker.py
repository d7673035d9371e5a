"""The real stream worker (apptremind-streams, a Faust worker subprocess) against the pinned Kafka broker:
due reminders and a booking go in through the outbox relay, each mail arrives at the SMTP sink exactly once
(every event is on the topic twice), and the status agent counts what was sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_notification import consumers
from apptremind_notification.bootstrap import build_spec
from apptremind_platform import outbox
from apptremind_platform.db import open_pool, unit_of_work
from tests.fixtures.relay import running_relay
from tests.fixtures.services import database_for
from tests.integration.notification.support import BookingStub, booked_event, reminder, serving_booking


async def test_worker_mails_each_due_reminder_once(
    postgres: PostgresServer, kafka: KafkaBroker, repo_root: Path, tmp_path: Path
) -> None:
    db = database_for(postgres, build_spec())
    stub = BookingStub()
    business_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reminders = [
        reminder(stub, business_id=business_id, remind_at=now, start=now + dt.timedelta(days=1, hours=n))
        for n in range(4)
    ]
    appointment_id = str(uuid.uuid4())
    booked = booked_event(
        business_id, appointment_id, f"c-{appointment_id[:8]}@example.com", now + dt.timedelta(days=2)
    )
    events = [r.event() for r in reminders] + [booked]
    pool = await open_pool(db.dsn, 1, 2)
    try:
        async with unit_of_work(pool) as conn:
            # Every event twice, as an at-least-once producer may deliver it.
            for event in events + events:
                await outbox.add(conn, event, source="test")
    finally:
        await pool.close()

    expected = sorted([r.recipient for r in reminders] + [f"c-{appointment_id[:8]}@example.com"])
    app_id = f"streams-test-{uuid.uuid4().hex[:8]}"
    # The worker's group starts at the current end of its topics, before the relay publishes this test's
    # events: the session's topics hold whatever earlier tests left there, which this worker must not have to
    # work through (its default for a new group is "earliest") before it gets to this test's events.
    await asyncio.to_thread(start_at_end, kafka.bootstrap_servers, app_id)
    with SmtpSink() as sink, running_relay(db.dsn, kafka):
        async with serving_booking(stub) as booking_target:
            env = {
                **os.environ,
                "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "APPTREMIND_DATABASE_URL": db.dsn,
                "APPTREMIND_BOOKING_TARGET": booking_target,
                "APPTREMIND_SMTP_HOST": "127.0.0.1",
                "APPTREMIND_SMTP_PORT": str(sink.port),
                "APPTREMIND_SMTP_CA_FILE": str(sink.ca_file),
                "APPTREMIND_STREAMS_APP_ID": app_id,
                "APPTREMIND_STREAMS_DATA_DIR": str(tmp_path / "faust"),
                "APPTREMIND_STREAMS_LOG_LEVEL": "warn",
                "APPTREMIND_LOG_LEVEL": "warning",
                # No billing here: SMS credits are not what this test is about.
                "APPTREMIND_SMS_METERING": "false",
            }
            log_path = tmp_path / "streams.log"
            with log_path.open("wb") as log:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "apptremind_streams.worker",
                    cwd=repo_root,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    counted = await wait_until_counted(db.dsn, business_id, len(events), worker, log_path)
                    # Let late duplicates, if any, arrive before counting mails.
                    await asyncio.sleep(2)
                    assert worker.returncode is None, await tail(log_path)
                finally:
                    worker.terminate()
                    await asyncio.wait_for(worker.wait(), 30)
        mails = sorted(rcpt for m in sink.messages() for rcpt in m.envelope_to if rcpt in expected)

    assert mails == expected
    assert counted == len(events)
    statuses = db.execute("SELECT status FROM delivery WHERE business_id = %s", (business_id,))
    assert sorted(str(s) for (s,) in statuses) == ["sent"] * len(events)


def start_at_end(bootstrap: str, group: str, timeout_s: float = 60.0) -> None:
    """Commits, as the consumer group's starting point, the end of every topic the worker reads."""
    topics = [
        consumers.DUE_TOPIC,
        consumers.BOOKED_TOPIC,
        consumers.RESCHEDULED_TOPIC,
        *consumers.status_topics(),
    ]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                offsets = []
                for topic in topics:
                    for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                        _, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                        offsets.append(TopicPartition(topic, partition, end))
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException:
                # A broker that has just started (or restarted) may not have settled its partition leaders.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


async def wait_until_counted(
    dsn: str, business_id: str, want: int, worker: asyncio.subprocess.Process, log_path: Path
) -> int:
    """Waits until the status agent has counted `want` sent messages for the business (that is, every
    mail went out, its notification.sent.v1 was relayed and consumed)."""
    pool = await open_pool(dsn, 1, 1)
    try:
        deadline = asyncio.get_running_loop().time() + 150
        while True:
            async with unit_of_work(pool) as conn, conn.cursor() as cur:
                await cur.execute(
                    "SELECT coalesce(sum(sent), 0) FROM delivery_daily WHERE business_id = %s", (business_id,)
                )
                row = await cur.fetchone()
            sent = int(row[0]) if row else 0
            if sent >= want:
                return sent
            assert worker.returncode is None, await tail(log_path)
            assert asyncio.get_running_loop().time() < deadline, await tail(log_path)
            await asyncio.sleep(0.3)
    finally:
        await pool.close()


async def tail(log_path: Path) -> str:
    text = await asyncio.to_thread(log_path.read_text)
    return text[-3000:]
