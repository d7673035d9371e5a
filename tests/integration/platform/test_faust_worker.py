"""A real Faust worker process and the outbox relay against the pinned Kafka broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_platform import outbox
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import Event, decode
from tests.fixtures.db import ServiceDb
from tests.fixtures.effects import CREATE, effects
from tests.fixtures.kafka_io import Record, create_topic, read_until
from tests.fixtures.relay import running_relay

TOPIC = "booking.reminder.cancelled.v1"
FORWARD = "test.faust.forwarded"


async def test_faust_agent_consumes_relay_output_and_produces(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker, repo_root: Path, tmp_path: Path
) -> None:
    service_db.execute(CREATE)
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
    with running_relay(service_db.dsn, kafka):
        log = (tmp_path / "faust.log").open("wb")
        env = {
            **os.environ,
            "PROBE_BROKER": kafka.bootstrap_servers,
            "PROBE_DSN": service_db.dsn,
            "PROBE_APP_ID": f"faust-probe-{uuid.uuid4().hex[:8]}",
            "PROBE_DATA_DIR": str(tmp_path / "faust-data"),
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
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                # How fast Faust shuts down is not under test; a slow stop must not fail it or leak the worker.
                worker.kill()
                worker.wait()
        return records
