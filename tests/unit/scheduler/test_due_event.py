"""The due event a claimed job becomes, and the validation of what a caller may schedule. Pure."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.envelope import decode, encode, headers_for
from apptremind_platform.errors import InvalidArgument
from apptremind_scheduler import service
from apptremind_scheduler.queue import Claimed
from apptremind_scheduler.worker import SOURCE, due_event, outgoing

DUE = dt.datetime(2031, 1, 1, 9, 0, tzinfo=dt.UTC)
PAYLOAD = AnyMessage.pack(ReminderCancelled(business_id="b", appointment_id="a", idempotency_key="k"))


def claimed(payload: AnyMessage | None = PAYLOAD, topic: str = "scheduler.reminder.due.v1") -> Claimed:
    return Claimed(
        job_id=uuid.uuid4(),
        business_id=uuid.uuid4(),
        idempotency_key="appt|2031|sms",
        due_at=DUE,
        topic=topic,
        key="appt",
        payload_type_url=payload.type_url if payload else "",
        payload=bytes(payload.value) if payload else b"",
        attempts=1,
        lease_expires_at=DUE,
        claimed_at=DUE,
    )


def test_the_due_event_carries_the_job_and_its_payload_untouched() -> None:
    job = claimed()
    message = outgoing(job)
    decoded = decode(job.topic, message.value)
    assert decoded.data == JobDue(
        job_id=str(job.job_id),
        business_id=str(job.business_id),
        idempotency_key=job.idempotency_key,
        due_at=DUE,
        payload=PAYLOAD,
    )
    # The envelope id is the job id (consumers dedupe a re-emission); the Kafka key is the job's key.
    assert decoded.envelope.id == str(job.job_id)
    assert message.key == b"appt"
    assert dict(message.headers)["ce_id"] == str(job.job_id).encode()


@pytest.mark.parametrize("payload", [PAYLOAD, None])
def test_the_fast_encoder_matches_the_platform_envelope(payload: AnyMessage | None) -> None:
    job = claimed(payload)
    message = outgoing(job)
    fast = decode(job.topic, message.value)
    reference_event = due_event(job)
    reference = decode(job.topic, encode(reference_event, source=SOURCE, when=fast.envelope.time))
    assert fast.envelope == reference.envelope
    assert fast.data == reference.data
    assert dict(message.headers) == {k: v.encode() for k, v in headers_for(reference_event).items()}
    assert message.key == reference_event.partition_key.encode()


def test_a_job_without_payload_emits_none() -> None:
    job = claimed(payload=None)
    data = decode(job.topic, outgoing(job).value).data
    assert isinstance(data, JobDue) and data.payload is None


def test_a_topic_that_does_not_carry_job_due_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        outgoing(claimed(topic="booking.appointment.booked.v1"))


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("scheduler.reminder.due.v1", None),
        ("scheduler.reminder.due.v1.dlq", "unknown_topic"),
        ("nope", "unknown_topic"),
        ("notification.sent.v1", "topic_not_for_jobs"),
    ],
)
def test_only_declared_job_due_topics_are_accepted(topic: str, reason: str | None) -> None:
    if reason is None:
        assert service.due_topic(topic) == topic
    else:
        with pytest.raises(InvalidArgument) as info:
            service.due_topic(topic)
        assert info.value.reason == reason


def test_new_job_defaults_the_key_and_normalises_the_due_time_to_utc() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    job = service.new_job(uuid.uuid4(), "k", DUE.astimezone(berlin), "scheduler.reminder.due.v1", "", "", b"")
    assert (job.key, job.due_at, job.due_at.tzinfo) == ("k", DUE, dt.UTC)
    with pytest.raises(InvalidArgument) as info:
        service.new_job(uuid.uuid4(), "k", DUE.replace(tzinfo=None), "scheduler.reminder.due.v1", "", "", b"")
    assert info.value.reason == "invalid_due_at"
