"""The platform's SQL through PgBouncer in transaction pooling mode (no session state, no prepared
statements carried across transactions): outbox writes with their per-key lock, inbox claims, and the
relay, all through the pooler."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.pgbouncer import PgBouncer, pgbouncer_binary
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_platform import outbox
from apptremind_platform.db import open_pool, unit_of_work
from apptremind_platform.envelope import Event, decode, encode
from apptremind_platform.processing import Incoming, MessageProcessor, Outcome
from apptremind_platform.relay import OutboxRelay, RelaySettings
from tests.fixtures.db import ServiceDb
from tests.fixtures.effects import CREATE, record_effect
from tests.fixtures.kafka_io import read_until

TOPIC = "booking.reminder.cancelled.v1"


@pytest.fixture
def bouncer(service_db: ServiceDb, postgres: PostgresServer, tmp_path: Path) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer must be installed in CI (.ci/run installs it)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    server = PgBouncer(
        tmp_path / "pgbouncer",
        port=free_port(),
        upstream_host="127.0.0.1",
        upstream_port=postgres.port,
        users={service_db.db.runtime_role: service_db.db.runtime_password},
    )
    server.start()
    yield server
    server.stop()


async def test_outbox_inbox_and_relay_through_transaction_pooling(
    service_db: ServiceDb, bouncer: PgBouncer, kafka: KafkaBroker
) -> None:
    service_db.execute(CREATE)
    dsn = bouncer.dsn(service_db.db.runtime_role, service_db.db.database)
    pool = await open_pool(dsn, min_size=2, max_size=8)
    keys = [f"biz-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        # Concurrent writers share few server connections; each transaction takes the per-key lock.
        async def write(n: int) -> None:
            key = keys[n % len(keys)]
            async with unit_of_work(pool) as conn:
                await outbox.add(
                    conn, Event(TOPIC, key, ReminderCancelled(key, "", f"{n:03d}")), source="test"
                )

        for chunk in range(0, 60, 12):
            await asyncio.gather(*(write(n) for n in range(chunk, chunk + 12)))

        processor = MessageProcessor("pooled", "test", pool, {TOPIC: record_effect})
        message = Incoming(
            TOPIC, 0, 0, b"x", encode(Event(TOPIC, "pooled-biz", ReminderCancelled("pooled-biz")), "t")
        )
        outcomes = [await processor.process(message) for _ in range(3)]
        assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    finally:
        await pool.close()

    relay = OutboxRelay(RelaySettings(service="test", dsn=dsn, bootstrap_servers=kafka.bootstrap_servers))
    try:
        published = 0
        while (n := await asyncio.to_thread(relay.publish_batch)) > 0:
            published += n
    finally:
        relay.close()
    assert published == 60
    records = await asyncio.to_thread(
        read_until,
        kafka.bootstrap_servers,
        [TOPIC],
        lambda rs: len(rs) >= 60,
        lambda r: r.key is not None and r.key.decode() in keys,
    )
    by_key: dict[str, list[str]] = {}
    for r in records:
        data = decode(TOPIC, r.value).data
        assert isinstance(data, ReminderCancelled)
        by_key.setdefault(data.business_id, []).append(data.idempotency_key)
    # Concurrent writers commit in any order; Kafka must hold each key's events in commit (= id) order.
    committed: dict[str, list[str]] = {}
    for key, payload in service_db.execute(
        "SELECT key, payload FROM outbox WHERE topic = %s ORDER BY id", (TOPIC,)
    ):
        data = decode(TOPIC, bytes(payload)).data  # type: ignore[arg-type]
        assert isinstance(data, ReminderCancelled)
        committed.setdefault(str(key), []).append(data.idempotency_key)
    assert by_key == committed
    assert all(len(seq) == 20 for seq in by_key.values())
    assert service_db.execute("SELECT count(*) FROM effect") == [(1,)]
