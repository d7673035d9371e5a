"""One trace ties a request to the messages it caused: outbox row -> Kafka headers -> consumer span."""

from __future__ import annotations

import asyncio
import uuid

from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_platform import outbox
from apptremind_platform.consumer import KafkaConsumerRunner
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.envelope import Decoded, Event
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.relay import OutboxRelay, RelaySettings
from apptremind_platform.tracing import configure_tracing, current_trace_id
from tests.fixtures.db import ServiceDb

TOPIC = "booking.reminder.cancelled.v1"


async def test_consumer_continues_the_producers_trace(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker
) -> None:
    configure_tracing("test", "none")
    business = f"biz-{uuid.uuid4().hex[:8]}"
    seen: dict[str, tuple[str, str]] = {}

    async def handler(conn: Conn, decoded: Decoded) -> None:
        seen[decoded.envelope.business_id] = (current_trace_id(), decoded.envelope.trace_id)

    with trace.get_tracer("test").start_as_current_span("graphql bookAppointment"):
        request_trace = current_trace_id()
        async with unit_of_work(pool) as conn:
            await outbox.add(
                conn, Event(TOPIC, business, ReminderCancelled(business_id=business)), source="test"
            )
    assert len(request_trace) == 32

    relay = OutboxRelay(
        RelaySettings(service="test", dsn=service_db.dsn, bootstrap_servers=kafka.bootstrap_servers)
    )
    await asyncio.to_thread(relay.publish_batch)
    relay.close()

    processor = MessageProcessor("trace-test", "test", pool, {TOPIC: handler})
    stop = asyncio.Event()
    task = asyncio.create_task(
        KafkaConsumerRunner(processor, kafka.bootstrap_servers, f"trace-{uuid.uuid4().hex}").run(stop)
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while business not in seen:
            assert asyncio.get_running_loop().time() < deadline, "message never consumed"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    consumer_trace, envelope_trace = seen[business]
    assert consumer_trace == request_trace
    assert envelope_trace == request_trace
