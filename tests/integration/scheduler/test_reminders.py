"""The reminder consumers end to end: real encoded booking events on Kafka in, JobDue events on
scheduler.reminder.due.v1 out, read back from Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc

from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled, ReminderRequested
from apptremind_gen.apptremind.scheduler import v1 as pb
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.envelope import Event, decode
from tests.fixtures.kafka_io import publish
from tests.integration.scheduler.support import (
    DUE_TOPIC,
    Harness,
    due_events,
    emitted_per_job,
    eventually,
    expect_error,
    read_due,
    utc_in,
)

REQUESTED = "booking.reminder.requested.v1"
CANCELLED = "booking.reminder.cancelled.v1"


def reminder(
    business_id: str, appointment_id: str, remind_at: dt.datetime, channel: Channel = Channel.EMAIL
) -> ReminderRequested:
    remind_at = remind_at.replace(microsecond=0)
    return ReminderRequested(
        business_id=business_id,
        appointment_id=appointment_id,
        remind_at=remind_at,
        channel=channel,
        recipient="ada@example.com",
        template_data={"customer_name": "Ada", "locale": "de-DE", "business_time_zone": "Europe/Berlin"},
        idempotency_key=f"{appointment_id}|{remind_at.isoformat()}|{channel.name.lower()}",
    )


def requested(r: ReminderRequested) -> Event:
    return Event(REQUESTED, r.business_id, r, subject=r.appointment_id)


def cancelled(r: ReminderRequested) -> Event:
    return Event(
        CANCELLED,
        r.business_id,
        ReminderCancelled(
            business_id=r.business_id, appointment_id=r.appointment_id, idempotency_key=r.idempotency_key
        ),
        subject=r.appointment_id,
    )


def states(h: Harness, business_id: str) -> dict[str, tuple[str, str]]:
    return {str(k): (str(state), str(topic)) for k, state, topic, _ in h.jobs(business_id)}


async def test_a_requested_reminder_is_emitted_once_at_its_time_with_its_payload(scheduler: Harness) -> None:
    business_id = str(uuid.uuid4())
    appointment_id = str(uuid.uuid4())
    # All three fall due together: once the two kept ones are emitted, the withdrawn one would have been too
    # (the worker claims in due order) had its cancel not been applied. The time leaves room for two trips
    # through Kafka and the consumer (the requests, then the cancel) before it, on a loaded machine too;
    # with a few seconds the worker could claim the job before the cancel arrived.
    at = utc_in(15)
    due = reminder(business_id, appointment_id, at)
    sms = reminder(business_id, appointment_id, at, Channel.SMS)
    withdrawn = reminder(business_id, str(uuid.uuid4()), at)
    first = requested(due)
    # The relay may deliver the same event twice (inbox), and booking may request the same reminder again
    # under a new event id (the job's idempotency key).
    publish(scheduler.bootstrap, first, first, requested(due), requested(sms), requested(withdrawn))
    await eventually(lambda: len(states(scheduler, business_id)) == 3, what="three jobs persisted")
    publish(scheduler.bootstrap, cancelled(withdrawn))
    await eventually(
        lambda: states(scheduler, business_id)[withdrawn.idempotency_key][0] == "cancelled",
        what="cancel applied",
    )

    records = await asyncio.to_thread(read_due, scheduler.bootstrap, {business_id}, expected=2, settle_s=4.0)
    assert sorted(emitted_per_job(records).values()) == [1, 1]
    by_key = {due_events(r).idempotency_key: r for r in records}
    assert set(by_key) == {due.idempotency_key, sms.idempotency_key}
    record = by_key[due.idempotency_key]
    event = due_events(record)
    # The payload is the booking event, untouched; the Kafka key is the appointment.
    assert event.payload == AnyMessage.pack(due)
    assert event.payload is not None and event.payload.unpack() == due
    assert (event.business_id, event.due_at) == (business_id, due.remind_at)
    assert record.key == appointment_id.encode()
    envelope = decode(DUE_TOPIC, record.value).envelope
    # The event id is the job id, so a re-emission after a lost lease is deduped by consumers.
    assert envelope.id == event.job_id and envelope.business_id == business_id
    await eventually(
        lambda: (
            states(scheduler, business_id)
            == {
                due.idempotency_key: ("completed", DUE_TOPIC),
                sms.idempotency_key: ("completed", DUE_TOPIC),
                withdrawn.idempotency_key: ("cancelled", DUE_TOPIC),
            }
        ),
        what="jobs completed",
    )


async def test_a_cancel_that_arrives_before_its_request_wins(scheduler: Harness) -> None:
    business_id = str(uuid.uuid4())
    early = reminder(business_id, str(uuid.uuid4()), utc_in(1))
    control = reminder(business_id, str(uuid.uuid4()), utc_in(1))
    # A cancel for a key nobody requested, then the same cancel again: both harmless.
    publish(scheduler.bootstrap, cancelled(early), cancelled(early))
    await eventually(
        lambda: early.idempotency_key in states(scheduler, business_id), what="tombstone recorded"
    )
    publish(scheduler.bootstrap, requested(early), requested(control))
    await eventually(
        lambda: control.idempotency_key in states(scheduler, business_id), what="control persisted"
    )

    records = await asyncio.to_thread(read_due, scheduler.bootstrap, {business_id}, expected=1, settle_s=3.0)
    assert [due_events(r).idempotency_key for r in records] == [control.idempotency_key]
    # The tombstone kept the key: the later request did not bring the job back, nor can an RPC.
    assert states(scheduler, business_id)[early.idempotency_key] == ("cancelled", "")
    owner = scheduler.metadata(str(uuid.uuid4()), {business_id: "owner"})
    await expect_error(
        scheduler.schedule(
            pb.ScheduleRequest(
                business_id=business_id,
                idempotency_key=early.idempotency_key,
                due_at=utc_in(60),
                topic=DUE_TOPIC,
            ),
            owner,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "job_cancelled",
    )


async def test_a_cancel_after_the_job_ran_changes_nothing(scheduler: Harness) -> None:
    business_id = str(uuid.uuid4())
    r = reminder(business_id, str(uuid.uuid4()), utc_in(0))
    publish(scheduler.bootstrap, requested(r))
    await eventually(
        lambda: states(scheduler, business_id).get(r.idempotency_key, ("",))[0] == "completed", what="job ran"
    )
    cancel = cancelled(r)
    publish(scheduler.bootstrap, cancel)
    await eventually(
        lambda: bool(scheduler.db.execute("SELECT 1 FROM inbox WHERE message_id = %s", (str(cancel.id),))),
        what="cancel consumed",
    )
    assert states(scheduler, business_id)[r.idempotency_key] == ("completed", DUE_TOPIC)
