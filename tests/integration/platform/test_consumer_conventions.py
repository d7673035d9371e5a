"""Inbox dedupe, retries, DLQ and replay through a real Kafka broker and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_platform import outbox
from apptremind_platform.consumer import KafkaConsumerRunner
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.dlq import list_dead_letters, replay
from apptremind_platform.envelope import Decoded, Event, encode
from apptremind_platform.processing import Batched, Incoming, MessageProcessor, Outcome, RetryPolicy
from tests.fixtures.db import ServiceDb
from tests.fixtures.effects import CREATE, effects, record_effect
from tests.fixtures.kafka_io import read_until
from tests.fixtures.relay import running_relay

TOPIC = "booking.reminder.cancelled.v1"


def cancelled(business_id: str, key: str) -> Event:
    return Event(TOPIC, business_id, ReminderCancelled(business_id=business_id, idempotency_key=key))


class Flaky:
    """A handler that fails for keys listed in `poison` and records everything else."""

    def __init__(self) -> None:
        self.poison: set[str] = set()
        self.attempts: dict[str, int] = {}

    async def __call__(self, conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        assert isinstance(data, ReminderCancelled)
        self.attempts[data.idempotency_key] = self.attempts.get(data.idempotency_key, 0) + 1
        if data.idempotency_key in self.poison:
            raise ValueError(f"cannot handle {data.idempotency_key}")
        await record_effect(conn, decoded)


async def no_sleep(_: float) -> None:
    return None


@asynccontextmanager
async def consuming(
    processor: MessageProcessor, kafka: KafkaBroker, group: str | None = None
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    runner = KafkaConsumerRunner(
        processor, kafka.bootstrap_servers, group_id=group or f"test-{uuid.uuid4().hex}"
    )
    task = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: object, timeout_s: float = 60.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def test_same_message_twice_has_one_side_effect(
    service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    service_db.execute(CREATE)
    processor = MessageProcessor("test-consumer", "test", pool, {TOPIC: record_effect})
    message = Incoming(TOPIC, 0, 7, b"biz", encode(cancelled("biz", "k1"), source="test"))

    assert await processor.process(message) is Outcome.PROCESSED
    assert await processor.process(message) is Outcome.DUPLICATE
    assert effects(service_db, "biz") == ["k1"]


async def test_handler_failure_rolls_back_the_inbox_claim(
    service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    service_db.execute(CREATE)
    handler = Flaky()
    handler.poison.add("k1")
    delays: list[float] = []

    async def record_sleep(delay: float) -> None:
        delays.append(delay)

    processor = MessageProcessor(
        "test-consumer",
        "test",
        pool,
        {TOPIC: handler},
        RetryPolicy(max_attempts=4, base_delay_s=0.5),
        record_sleep,
    )
    message = Incoming(TOPIC, 0, 1, b"biz", encode(cancelled("biz", "k1"), source="test"))
    assert await processor.process(message) is Outcome.DEAD_LETTERED
    assert handler.attempts["k1"] == 4
    assert len(delays) == 3 and all(0 <= d <= 0.5 * 2**i for i, d in enumerate(delays))
    # Nothing was claimed, so once fixed the same message is processed.
    handler.poison.clear()
    assert await processor.process(message) is Outcome.PROCESSED
    assert effects(service_db, "biz") == ["k1"]


async def test_poison_reaches_dlq_with_error_and_replay_processes_it(
    service_db: ServiceDb, pool: AsyncConnectionPool, kafka: KafkaBroker
) -> None:
    service_db.execute(CREATE)
    business = f"biz-{uuid.uuid4().hex[:8]}"
    poison_key = f"poison-{uuid.uuid4().hex[:8]}"
    handler = Flaky()
    handler.poison.add(poison_key)
    processor = MessageProcessor(
        "test-consumer", "test", pool, {TOPIC: handler}, RetryPolicy(max_attempts=3), no_sleep
    )
    async with unit_of_work(pool) as conn:
        await outbox.add(conn, cancelled(business, "ok-1"), source="test")
        await outbox.add(conn, cancelled(business, poison_key), source="test")
        await outbox.add(conn, cancelled(business, "ok-2"), source="test")

    # One consumer group throughout, as a service keeps: resumed after the replay it sees only the replayed
    # copy (a fresh group would read the original again from the start, and the test would pass without
    # the replay ever delivering anything).
    group = f"test-{uuid.uuid4().hex}"
    with running_relay(service_db.dsn, kafka):
        async with consuming(processor, kafka, group):
            await eventually(lambda: effects(service_db, business) == ["ok-1", "ok-2"])
            dead = await asyncio.to_thread(
                read_until,
                kafka.bootstrap_servers,
                [TOPIC + ".dlq"],
                lambda rs: len(rs) >= 1,
                lambda r: r.key == business.encode(),
            )
        assert handler.attempts[poison_key] == 3
        headers = dead[0].headers
        assert headers["dlq-error"] == f"cannot handle {poison_key}".encode()
        assert headers["dlq-error-type"] == b"ValueError"
        assert headers["dlq-attempts"] == b"3"
        assert headers["dlq-original-topic"] == TOPIC.encode()
        assert any(d.key == business.encode() for d in list_dead_letters(kafka.bootstrap_servers, TOPIC))

        # The fault is fixed; replay moves the message back and the consumer processes it once.
        handler.poison.clear()
        moved = await asyncio.to_thread(replay, kafka.bootstrap_servers, TOPIC)
        assert moved >= 1
        async with consuming(processor, kafka, group):
            await eventually(lambda: effects(service_db, business) == ["ok-1", "ok-2", poison_key])
    assert handler.attempts[poison_key] == 4


async def test_unknown_major_version_goes_to_dlq_without_retries(
    service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    handler = Flaky()
    processor = MessageProcessor("test-consumer", "test", pool, {TOPIC: handler}, RetryPolicy(), no_sleep)
    from apptremind_gen.apptremind.events.v1 import Envelope

    envelope = Envelope.parse(encode(cancelled("biz", "k9"), source="test"))
    envelope.version = 2
    outcome = await processor.process(Incoming(TOPIC, 0, 3, b"biz", bytes(envelope)))
    assert outcome is Outcome.DEAD_LETTERED
    assert handler.attempts == {}
    rows = service_db.execute("SELECT topic, headers->>'dlq-error' FROM outbox")
    assert rows == [(TOPIC + ".dlq", f"unsupported major version 2 on {TOPIC} (expected 1)")]


class BatchRecorder(Flaky):
    """Flaky that also applies many messages at once, counting the batches it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def apply(self, conn: Conn, batch: Sequence[Decoded]) -> None:
        self.batches.append(len(batch))
        for decoded in batch:
            await self(conn, decoded)


async def test_a_batch_is_claimed_and_applied_together_and_dedupes(
    service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    service_db.execute(CREATE)
    handler = BatchRecorder()
    processor = MessageProcessor(
        "test-consumer", "test", pool, {TOPIC: Batched(handler, handler.apply)}, RetryPolicy(), no_sleep
    )
    messages = [
        Incoming(TOPIC, 0, n, b"biz", encode(cancelled("biz", f"k{n}"), source="test")) for n in range(5)
    ]
    assert await processor.process(messages[0]) is Outcome.PROCESSED  # already in the inbox

    # k0 was seen before and k3 comes twice in the batch: each is applied once, in one batch of the rest.
    outcomes = await processor.process_many([*messages, messages[3]])

    assert outcomes == [Outcome.DUPLICATE] + [Outcome.PROCESSED] * 4 + [Outcome.DUPLICATE]
    assert handler.batches == [4]
    assert effects(service_db, "biz") == ["k0", "k1", "k2", "k3", "k4"]
    assert await processor.process_many(messages) == [Outcome.DUPLICATE] * 5
    assert effects(service_db, "biz") == ["k0", "k1", "k2", "k3", "k4"]


async def test_a_failing_batch_rolls_back_and_each_message_goes_alone(
    service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    service_db.execute(CREATE)
    handler = BatchRecorder()
    handler.poison.add("bad")
    processor = MessageProcessor(
        "test-consumer", "test", pool, {TOPIC: Batched(handler, handler.apply)}, RetryPolicy(2), no_sleep
    )
    good = [Incoming(TOPIC, 0, n, b"biz", encode(cancelled("biz", f"k{n}"), source="test")) for n in range(3)]
    bad = Incoming(TOPIC, 0, 9, b"biz", encode(cancelled("biz", "bad"), source="test"))
    poison = Incoming(TOPIC, 0, 10, b"biz", b"not an envelope")

    outcomes = await processor.process_many([good[0], bad, poison, good[1], good[2]])

    # The batch failed on "bad" and rolled back; alone, the good ones are processed, "bad" is retried
    # and dead-lettered, and the poison goes to the DLQ without ever reaching the handler.
    assert outcomes == [
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    assert handler.batches == [4]
    assert handler.attempts["bad"] == 1 + 2
    assert effects(service_db, "biz") == ["k0", "k1", "k2"]
    dead = service_db.execute("SELECT headers->>'dlq-original-offset' FROM outbox ORDER BY id")
    assert sorted(str(r[0]) for r in dead) == ["10", "9"]
