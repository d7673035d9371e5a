"""Dead-letter queue tooling: list what is in `<topic>.dlq`, and replay it back onto `<topic>`.

Replay keeps key, value and the original headers (dropping the `dlq-*` ones), so the message is the one
that failed; the consumer's inbox still dedupes it if an earlier copy was processed after all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from .processing import DLQ_HEADER_PREFIX
from .relay import producer_config
from .topics import DLQ_SUFFIX


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def error(self) -> str:
        return dict(self.headers).get("dlq-error", b"").decode(errors="replace")


def _headers(message: Message) -> list[tuple[str, bytes]]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]


def _dead_letter(message: Message) -> DeadLetter:
    return DeadLetter(
        message.partition() or 0, message.offset() or 0, message.key(), message.value(), _headers(message)
    )


def _drain(consumer: Consumer, idle_timeout_s: float, limit: int | None) -> Iterator[Message]:
    seen = 0
    while limit is None or seen < limit:
        message = consumer.poll(idle_timeout_s)
        if message is None:
            return
        if message.error():
            raise KafkaException(message.error())
        seen += 1
        yield message


def list_dead_letters(bootstrap_servers: str, topic: str, idle_timeout_s: float = 3.0) -> list[DeadLetter]:
    """Reads the DLQ from the start without committing (a throwaway group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"apptremind-dlq-list-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic + DLQ_SUFFIX])
    try:
        return [_dead_letter(m) for m in _drain(consumer, idle_timeout_s, None)]
    finally:
        consumer.close()


def replay(bootstrap_servers: str, topic: str, limit: int | None = None, idle_timeout_s: float = 3.0) -> int:
    """Moves dead letters back to `topic`; returns how many. Offsets are committed only after the copies
    are acknowledged, so an interrupted replay repeats (never skips) messages."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "apptremind-dlq-replay",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(producer_config(bootstrap_servers))
    consumer.subscribe([topic + DLQ_SUFFIX])
    moved = 0
    try:
        replayed_at = dt.datetime.now(dt.UTC).isoformat().encode()
        batch: list[Message] = []
        for message in _drain(consumer, idle_timeout_s, limit):
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in _headers(message) if not k.startswith(DLQ_HEADER_PREFIX)
            ]
            headers.append(("dlq-replayed-at", replayed_at))
            producer.produce(topic, key=message.key(), value=message.value(), headers=headers)
            batch.append(message)
            if len(batch) >= 500:
                moved += _commit(consumer, producer, batch)
                batch = []
        if batch:
            moved += _commit(consumer, producer, batch)
    finally:
        producer.flush(10)
        consumer.close()
    return moved


def _commit(consumer: Consumer, producer: Producer, batch: list[Message]) -> int:
    if producer.flush(30) != 0:
        raise KafkaException("replayed messages were not acknowledged; nothing committed")
    offsets = {(m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1 for m in batch}
    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    return len(batch)
