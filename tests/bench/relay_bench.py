"""Outbox relay throughput: committed outbox rows -> acknowledged Kafka writes, per-key order checked.

Beside it, Kafka's own ProducerPerformance from the same jars, same broker, same record size and the same
producer settings (acks=all, idempotence, lz4, linger 5 ms) as the ceiling a Python relay can approach.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from apptremind_devstack.kafka import KafkaBroker, kafka_java_argv
from apptremind_gen.apptremind.events.booking.v1 import AppointmentBooked
from apptremind_platform.envelope import Event, encode, headers_for
from apptremind_platform.relay import OutboxRelay, RelaySettings
from tests.fixtures.db import ServiceDb

TOPIC = "booking.appointment.booked.v1"


@dataclass(frozen=True)
class RelayResult:
    events: int
    seconds: float
    record_bytes: int
    keys: int
    order_kept: bool

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def seed_outbox(db: ServiceDb, events: int, keys: int) -> int:
    """Commits `events` outbox rows over `keys` businesses; returns the average record size."""
    businesses = [str(uuid.uuid4()) for _ in range(keys)]
    total = 0
    with psycopg.connect(db.dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY outbox (topic, key, payload, headers) FROM STDIN") as copy:
            for seq in range(events):
                business = businesses[seq % keys]
                event = Event(
                    TOPIC,
                    business,
                    AppointmentBooked(
                        business_id=business, appointment_id=str(seq), staff_id=str(uuid.uuid4())
                    ),
                )
                payload = encode(event, source="bench")
                total += len(payload)
                copy.write_row((TOPIC, business, payload, psycopg.types.json.Jsonb(headers_for(event))))
        conn.commit()
    return total // events


def run_relay(db: ServiceDb, kafka: KafkaBroker, events: int = 200_000, keys: int = 500) -> RelayResult:
    record_bytes = seed_outbox(db, events, keys)
    relay = OutboxRelay(RelaySettings(service="bench", dsn=db.dsn, bootstrap_servers=kafka.bootstrap_servers))
    started = time.perf_counter()
    published = 0
    try:
        while (n := relay.publish_batch()) > 0:
            published += n
    finally:
        relay.close()
    seconds = time.perf_counter() - started
    assert published == events, (published, events)
    return RelayResult(events, seconds, record_bytes, keys, order_kept=check_order(kafka, events))


def check_order(kafka: KafkaBroker, events: int) -> bool:
    """Reads the topic back: per key, the appointment sequence must be increasing."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    last: dict[bytes, int] = {}
    seen = 0
    ok = True
    try:
        while seen < events:
            batch = consumer.consume(10_000, 5.0)
            if not batch:
                break
            for msg in batch:
                if msg.error():
                    continue
                seen += 1
                seq = int(AppointmentBooked.parse(_payload(msg.value() or b"")).appointment_id)
                key = msg.key() or b""
                if seq <= last.get(key, -1):
                    ok = False
                last[key] = seq
    finally:
        consumer.close()
    return ok and seen >= events


def _payload(value: bytes) -> bytes:
    from apptremind_gen.apptremind.events.v1 import Envelope

    data = Envelope.parse(value).data
    return data.value if data is not None else b""


def run_producer_performance(kafka: KafkaBroker, records: int, record_bytes: int) -> float:
    topic = f"bench.producer-performance.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result()
    argv = kafka_java_argv(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_bytes),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={kafka.bootstrap_servers}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "compression.type=lz4",
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    match = re.search(r"(\d+) records sent, ([\d.]+) records/sec", out)
    if match is None:
        raise RuntimeError(f"unexpected ProducerPerformance output:\n{out[-2000:]}")
    return float(match.group(2))
