"""Which librdkafka delivery reports prove a message is in the log (the relay and the scheduler both ask)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from apptremind_platform.relay import delivery_failure


def test_an_acknowledgement_with_an_offset_proves_the_write() -> None:
    assert delivery_failure(None, Message(topic="t", partition=2, offset=0)) is None
    assert delivery_failure(None, Message(topic="t", partition=2, offset=41)) is None


def test_an_acknowledgement_without_an_offset_is_a_failure() -> None:
    # What librdkafka hands over for an "implicitly acked" message: no error, and no offset.
    failure = delivery_failure(None, Message(topic="t", partition=2))
    assert failure is not None and "without an offset" in failure


def test_an_error_report_is_a_failure_with_librdkafkas_reason() -> None:
    failure = delivery_failure(KafkaError(KafkaError._MSG_TIMED_OUT), Message(topic="t", partition=2))
    assert failure is not None and "timed out" in failure.lower()
