"""DLQ listing and replay read a dead-letter topic to the end it has when they start, through a real broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer

from apptremind_devstack.kafka import KafkaBroker
from apptremind_platform.dlq import list_dead_letters, replay
from apptremind_platform.topics import DLQ_SUFFIX
from tests.fixtures.kafka_io import create_topic, read_until

PARTITIONS = 3


def new_topic(kafka: KafkaBroker) -> str:
    topic = f"test.dlq-{uuid.uuid4().hex[:8]}.v1"
    for name in (topic, topic + DLQ_SUFFIX):
        create_topic(kafka.bootstrap_servers, name, PARTITIONS)
        wait_until_known(kafka, name)
    return topic


def wait_until_known(kafka: KafkaBroker, topic: str) -> None:
    """The broker answers CreateTopics before its metadata shows the topic; the DLQ tools refuse an unknown
    topic at once (a mistyped name), so a test waits until it is known."""
    admin = kafka.admin_client()
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=5).topics[topic].partitions) < PARTITIONS:
        assert time.monotonic() < deadline, "the new topic never showed in the metadata"
        time.sleep(0.1)


def dead_letter(kafka: KafkaBroker, topic: str, keys: list[str]) -> None:
    """Writes letters the way a consumer dead-letters them: the original headers plus `dlq-*` ones."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for n, key in enumerate(keys):
        producer.produce(
            topic + DLQ_SUFFIX,
            key=key.encode(),
            value=f"payload-{key}".encode(),
            partition=n % PARTITIONS,
            headers=[("event-id", key.encode()), ("dlq-error", f"ValueError: {key}".encode())],
        )
    assert producer.flush(30) == 0


def test_replay_moves_each_letter_once_across_runs_and_an_empty_queue_ends_at_once(
    kafka: KafkaBroker,
) -> None:
    topic = new_topic(kafka)
    bootstrap = kafka.bootstrap_servers
    # Nothing there: the read ends at the (empty) end. A read that waited for a quiet spell instead would
    # raise here, since the stall limit is shorter than any wait for a message that never comes.
    assert replay(bootstrap, topic, stall_timeout_s=5) == 0
    assert list_dead_letters(bootstrap, topic, stall_timeout_s=5) == []

    dead_letter(kafka, topic, ["a", "b", "c", "d", "e"])
    listed = list_dead_letters(bootstrap, topic)
    assert sorted(d.key for d in listed if d.key) == [b"a", b"b", b"c", b"d", b"e"]
    assert {d.error for d in listed} == {f"ValueError: {k}" for k in "abcde"}

    # A limited replay, then the rest, then nothing: the group's committed offsets carry over.
    assert replay(bootstrap, topic, limit=2) == 2
    assert replay(bootstrap, topic) == 3
    assert replay(bootstrap, topic, stall_timeout_s=5) == 0
    # A letter dead-lettered later is replayed by the next run, alone.
    dead_letter(kafka, topic, ["f"])
    assert replay(bootstrap, topic) == 1

    back = read_until(bootstrap, [topic], lambda rs: len(rs) >= 6)
    assert sorted(r.key for r in back if r.key) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    for record in back:
        assert record.headers["event-id"] == record.key
        assert "dlq-error" not in record.headers and "dlq-replayed-at" in record.headers
    # Listing never commits: it still sees every letter.
    assert len(list_dead_letters(bootstrap, topic)) == 6


def test_a_replay_whose_copies_fail_commits_nothing(kafka: KafkaBroker) -> None:
    # Only the dead-letter topic exists: every copy fails (unknown topic; the broker creates none), which
    # librdkafka reports through the delivery callback after its metadata wait (~30 s) rather than by
    # keeping the message queued.
    topic = f"test.dlq-{uuid.uuid4().hex[:8]}.v1"
    create_topic(kafka.bootstrap_servers, topic + DLQ_SUFFIX, PARTITIONS)
    wait_until_known(kafka, topic + DLQ_SUFFIX)
    dead_letter(kafka, topic, ["a", "b"])
    with pytest.raises(KafkaException, match="not written"):
        replay(kafka.bootstrap_servers, topic)
    # Once the topic is there, the same letters are moved: the failed replay committed none of them.
    create_topic(kafka.bootstrap_servers, topic, PARTITIONS)
    wait_until_known(kafka, topic)
    assert replay(kafka.bootstrap_servers, topic) == 2
