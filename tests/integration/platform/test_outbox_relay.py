"""The outbox and its relay against a real Postgres and a real Kafka broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_gen.apptremind.events.booking.v1 import AppointmentBooked
from apptremind_platform import outbox
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import Event, decode
from apptremind_platform.relay import OutboxRelay, RelaySettings
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import Record, read_until
from tests.fixtures.relay import running_relay

TOPIC = "booking.appointment.booked.v1"


def booked(business_id: str, seq: int) -> Event:
    return Event(TOPIC, business_id, AppointmentBooked(business_id=business_id, appointment_id=str(seq)))


def publish_failures() -> float:
    return REGISTRY.get_sample_value("outbox_publish_failures_total", {"service": "test"}) or 0.0


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sequences(records: list[Record]) -> dict[str, list[int]]:
    """Per key, the appointment sequence numbers in the order Kafka holds them."""
    out: dict[str, list[int]] = {}
    for record in records:
        data = decode(record.topic, record.value).data
        assert isinstance(data, AppointmentBooked)
        out.setdefault(record.key.decode() if record.key else "", []).append(int(data.appointment_id))
    return out


async def test_events_committed_while_broker_down_arrive_once_in_order(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker
) -> None:
    service_db.execute("CREATE TABLE appointment (id int PRIMARY KEY, business_id text NOT NULL)")
    keys = [f"biz-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    kafka.stop()
    try:
        seq = 0
        for _ in range(40):
            for key in keys:
                seq += 1
                async with unit_of_work(pool) as conn:
                    await conn.execute("INSERT INTO appointment VALUES (%s, %s)", (seq, key))
                    await outbox.add(conn, booked(key, seq), source="test")
        # A transaction that rolls back publishes nothing.
        with pytest.raises(RuntimeError):
            async with unit_of_work(pool) as conn:
                await outbox.add(conn, booked(keys[0], 10_000), source="test")
                raise RuntimeError("domain check failed")
        failures_before = publish_failures()
        with running_relay(service_db.dsn, kafka, flush_timeout_s=2.0) as relay:
            # The relay is up and has tried and failed against the dead broker: nothing is marked published.
            wait_until(lambda: publish_failures() > failures_before, "a batch failed against the dead broker")
            pending = service_db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            assert pending == [(120,)]
            # A batch given up while the restarted broker is answering it (2 s is short for a cold broker on a
            # loaded machine) is rolled back and sent again: duplicates the relay allows and this test, about
            # an outage, does not. From here on a batch waits for the broker's acks as long as its messages
            # live (message.timeout.ms).
            relay.settings.flush_timeout_s = 60.0
            kafka.start()
            records = read_until(
                kafka.bootstrap_servers,
                [TOPIC],
                done=lambda rs: len(rs) >= 120,
                keep=lambda r: r.key is not None and r.key.decode() in keys,
            )
            # Healthy is set after the batch's commit and the housekeeping that follows it, which may trail
            # the records' arrival.
            wait_until(lambda: relay.healthy, "the relay healthy again")
    finally:
        if kafka.pid is None:
            kafka.start()

    by_key = sequences(records)
    assert sorted(by_key) == sorted(keys)
    for key in keys:
        assert by_key[key] == sorted(by_key[key]), f"{key} reordered"
        assert len(by_key[key]) == len(set(by_key[key])) == 40, f"{key} lost or duplicated"
    assert all(10_000 not in seqs for seqs in by_key.values())
    assert service_db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)]


async def test_two_relays_at_once_keep_each_key_in_order(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker
) -> None:
    keys = [f"biz-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    total = 0
    with (
        running_relay(service_db.dsn, kafka, batch_size=25),
        running_relay(service_db.dsn, kafka, batch_size=25),
    ):
        for seq in range(1, 301):
            key = keys[seq % len(keys)]
            async with unit_of_work(pool) as conn:
                await outbox.add(conn, booked(key, seq), source="test")
            total += 1
        records = read_until(
            kafka.bootstrap_servers,
            [TOPIC],
            done=lambda rs: len({(r.key, r.value) for r in rs}) >= total,
            keep=lambda r: r.key is not None and r.key.decode() in keys,
        )
    for key, seqs in sequences(records).items():
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), f"{key} reordered"
        assert len(first_seen) == total // len(keys)


async def test_published_rows_are_pruned(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker
) -> None:
    key = f"biz-{uuid.uuid4().hex[:8]}"
    async with unit_of_work(pool) as conn:
        for seq in range(5):
            await outbox.add(conn, booked(key, seq), source="test")
    relay = OutboxRelay(
        RelaySettings(service="test", dsn=service_db.dsn, bootstrap_servers=kafka.bootstrap_servers)
    )
    try:
        assert relay.publish_batch() == 5
        assert relay.publish_batch() == 0
        assert relay.refresh_stats() == (0, 0.0)
        service_db.execute("UPDATE outbox SET published_at = now() - interval '2 hours'")
        assert relay.prune() == 5
    finally:
        relay.close()
    assert service_db.execute("SELECT count(*) FROM outbox") == [(0,)]
