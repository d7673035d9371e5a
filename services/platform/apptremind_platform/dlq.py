"""Dead-letter queue tooling: list what is in `<topic>.dlq`, and replay it back onto `<topic>`.

Replay keeps key, value and the original headers (dropping the `dlq-*` ones), so the message is the one
that failed; the consumer's inbox still dedupes it if an earlier copy was processed after all.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from .processing import DLQ_HEADER_PREFIX
from .relay import delivery_failure, producer_config
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


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaException(metadata.error if metadata is not None else f"no topic {topic}")
    return sorted(metadata.partitions)


# What a group coordinator answers while it is still loading or moving; librdkafka does not mark all of
# them retriable.
_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def _committed(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> list[TopicPartition]:
    """The group's committed offsets, waiting out a group coordinator that is still loading (a broker that
    has just started answers NOT_COORDINATOR for a while)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(consumer.committed(partitions, timeout=max(deadline - time.monotonic(), 1.0)))
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            transient = error is not None and (error.retriable() or error.code() in _COORDINATOR_MOVING)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read_to_end(
    consumer: Consumer, topic: str, from_committed: bool, limit: int | None, stall_timeout_s: float
) -> Iterator[Message]:
    """Yields what `topic` holds now, from the start or from the consumer group's committed offsets.

    The end is each partition's high watermark taken before reading, not a quiet spell: an idle poll also
    happens while a consumer is still joining its group, and ending there made a slow join look like an
    empty dead-letter queue. Partitions are assigned, not subscribed, for the same reason.
    """
    partitions = [TopicPartition(topic, p) for p in _partitions(consumer, topic, stall_timeout_s)]
    marks = {tp.partition: consumer.get_watermark_offsets(tp, timeout=stall_timeout_s) for tp in partitions}
    ends = {p: high for p, (_, high) in marks.items()}
    starts = (
        _committed(consumer, partitions, stall_timeout_s)
        if from_committed
        else [TopicPartition(topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
    )
    # A partition the group never committed on starts at its beginning; one already read to its end is skipped.
    starts = [
        TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
        for tp in starts
    ]
    # Retention may have deleted the start of a partition: what is left begins at its low watermark.
    unread = {
        tp.partition: ends[tp.partition]
        for tp in starts
        if ends[tp.partition] > max(tp.offset, marks[tp.partition][0])
    }
    consumer.assign([tp for tp in starts if tp.partition in unread])
    seen = 0
    stalled_at = time.monotonic() + stall_timeout_s
    while unread and (limit is None or seen < limit):
        message = consumer.poll(0.5)
        if message is not None:
            if message.error():
                raise KafkaException(message.error())
            stalled_at = time.monotonic() + stall_timeout_s
            if (message.offset() or 0) < ends[message.partition() or 0]:
                seen += 1
                yield message
        # The position, not the last offset seen, says a partition is done: a transaction's commit marker
        # takes the last offset and is never handed out.
        for tp in consumer.position([TopicPartition(topic, p) for p in unread]):
            if tp.offset >= unread[tp.partition]:
                del unread[tp.partition]
        if message is None and unread and time.monotonic() > stalled_at:
            raise KafkaException(f"{topic}: nothing read for {stall_timeout_s}s before its end {unread}")


def list_dead_letters(bootstrap_servers: str, topic: str, stall_timeout_s: float = 30.0) -> list[DeadLetter]:
    """Reads the DLQ from the start to its current end, without committing (a throwaway group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"apptremind-dlq-list-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        return [
            _dead_letter(m) for m in _read_to_end(consumer, topic + DLQ_SUFFIX, False, None, stall_timeout_s)
        ]
    finally:
        consumer.close()


def replay(
    bootstrap_servers: str, topic: str, limit: int | None = None, stall_timeout_s: float = 30.0
) -> int:
    """Moves the dead letters not replayed yet back to `topic`; returns how many. Offsets are committed only
    after the copies are acknowledged, so an interrupted replay repeats (never skips) messages. Two replays
    of one topic at once would both move the same letters; the consumers' inboxes drop the second copy."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "apptremind-dlq-replay",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(producer_config(bootstrap_servers))
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, message: Message) -> None:
        failure = delivery_failure(err, message)
        if failure is not None:
            failures.append(failure)

    moved = 0
    try:
        replayed_at = dt.datetime.now(dt.UTC).isoformat().encode()
        batch: list[Message] = []
        for message in _read_to_end(consumer, topic + DLQ_SUFFIX, True, limit, stall_timeout_s):
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in _headers(message) if not k.startswith(DLQ_HEADER_PREFIX)
            ]
            headers.append(("dlq-replayed-at", replayed_at))
            producer.produce(
                topic, key=message.key(), value=message.value(), headers=headers, on_delivery=on_delivery
            )
            batch.append(message)
            if len(batch) >= 500:
                moved += _commit(consumer, producer, batch, failures)
                batch = []
        if batch:
            moved += _commit(consumer, producer, batch, failures)
    finally:
        producer.flush(10)
        consumer.close()
    return moved


def _commit(consumer: Consumer, producer: Producer, batch: list[Message], failures: list[str]) -> int:
    # A failed copy is reported through the delivery callback, not left in the queue: flush alone cannot tell.
    if producer.flush(30) != 0 or failures:
        reason = failures[0] if failures else "not acknowledged in time"
        raise KafkaException(f"replayed messages were not written ({reason}); this batch was not committed")
    offsets = {(m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1 for m in batch}
    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    return len(batch)
