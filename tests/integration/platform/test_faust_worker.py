"""A real Faust worker process and the outbox relay against the pinned Kafka broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_platform import outbox
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import Event, decode
from apptremind_platform.relay import OutboxRelay, RelaySettings
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import Record, create_topic, read_until

TOPIC = "booking.reminder.cancelled.v1"
FORWARD = "test.faust.forwarded"


def effects(service_db: ServiceDb, business: str) -> list[str]:
    rows = service_db.execute(
        "SELECT idempotency_key FROM effect WHERE business_id = %s ORDER BY idempotency_key", (business,)
    )
    return [str(r[0]) for r in rows]


async def test_faust_agent_consumes_relay_output_and_produces(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker, repo_root: Path, tmp_path: Path
) -> None:
    service_db.execute("CREATE TABLE effect (business_id text, idempotency_key text)")
    create_topic(kafka.bootstrap_servers, FORWARD)

    business = f"biz-{uuid.uuid4().hex[:8]}"
    keys = [f"k{i:02d}" for i in range(20)]
    async with unit_of_work(pool) as conn:
        for key in keys:
            await outbox.add(
                conn, Event(TOPIC, business, ReminderCancelled(business, "", key)), source="test"
            )

    records = await asyncio.to_thread(
        run_worker_until_done, service_db, kafka, repo_root, tmp_path, business, keys
    )
    forwarded = sorted(decode(TOPIC, r.value).data.idempotency_key for r in records)  # type: ignore[attr-defined]
    assert forwarded == keys


def run_worker_until_done(
    service_db: ServiceDb, kafka: KafkaBroker, repo_root: Path, tmp_path: Path, business: str, keys: list[str]
) -> list[Record]:
    """Runs the relay and a real Faust worker until the worker has handled and forwarded every event."""
    relay = OutboxRelay(
        RelaySettings(service="test", dsn=service_db.dsn, bootstrap_servers=kafka.bootstrap_servers)
    )
    stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relay_thread.start()

    log = (tmp_path / "faust.log").open("wb")
    env = {
        **os.environ,
        "PROBE_BROKER": kafka.bootstrap_servers,
        "PROBE_DSN": service_db.dsn,
        "PROBE_APP_ID": f"faust-probe-{uuid.uuid4().hex[:8]}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.fixtures.faust_probe_app", "worker", "-l", "warn"],
        cwd=repo_root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while effects(service_db, business) != keys:
            assert worker.poll() is None, (tmp_path / "faust.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "faust.log").read_text()[-3000:]
            time.sleep(0.2)
        records = read_until(
            kafka.bootstrap_servers,
            [FORWARD],
            done=lambda rs: len(rs) >= len(keys),
            keep=lambda r: r.key == business.encode(),
        )
    finally:
        worker.terminate()
        worker.wait(30)
        stop.set()
        relay_thread.join(30)
    return records
