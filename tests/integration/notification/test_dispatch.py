"""The dispatch pipeline through the platform's MessageProcessor, against a real gRPC booking stand-in, the
real SMTP sink and the real Twilio-shaped SMS server: dedupe, booking's verdict, opt-outs, quiet hours,
retries, the DLQ and its replay, SMS replies and status callbacks, booking confirmations."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.smtp_sink import SinkMessage
from apptremind_gen.apptremind.notification import v1 as pb
from apptremind_notification import consumers, repository
from apptremind_notification.dispatch import Dispatcher
from apptremind_notification.group_commit import GroupCommit
from apptremind_platform import dlq
from apptremind_platform.db import unit_of_work
from apptremind_platform.processing import Incoming, MessageProcessor, Outcome, RetryPolicy
from apptremind_platform.topics import DLQ_SUFFIX
from apptremind_platform.webhook_signatures import twilio_signature
from tests.fixtures.kafka_io import read_until
from tests.fixtures.relay import running_relay
from tests.integration.notification.conftest import Notification
from tests.integration.notification.support import (
    NOW,
    SMS_TOKEN,
    Reminder,
    booked_event,
    incoming,
    reminder,
)

DUE = "scheduler.reminder.due.v1"
WEBHOOK_BASE = "https://edge.apptremind.test/webhooks/twilio"


async def no_wait(_: float) -> None:
    return None


def processor(h: Notification, attempts: int = 5) -> MessageProcessor:
    assert h.runtime.pool is not None
    made = consumers.dispatch_processor(
        h.runtime.pool, h.dispatcher, RetryPolicy(max_attempts=attempts, base_delay_s=0.01)
    )
    made.sleep = no_wait
    return made


def mails_to(h: Notification, address: str) -> list[SinkMessage]:
    return [m for m in h.smtp.messages() if address in m.envelope_to]


def sms_to(h: Notification, number: str) -> list[str]:
    return [m.body for m in h.sms.messages() if m.to == number]


async def test_a_current_reminder_is_sent_once_however_often_it_is_delivered(harness: Notification) -> None:
    r = reminder(harness.booking)
    event = r.event()
    outcomes = [await processor(harness).process(incoming(event, n)) for n in range(3)]
    # The same job fired again under a new message id (a scheduler retry) is deduped by its key.
    again = await processor(harness).process(incoming(r.event(uuid.uuid4())))

    assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert again is Outcome.PROCESSED
    [mail] = mails_to(harness, r.recipient)
    status, _, attempts = harness.delivery(r.business_id, r.key)
    assert (status, attempts) == ("sent", 1)
    [(delivery_id,)] = harness.db.execute(
        "SELECT delivery_id FROM delivery WHERE business_id = %s", (r.business_id,)
    )
    assert str(delivery_id) in mail.message_id
    assert mail.message["Subject"] == "Reminder: Haircut on Tuesday, June 4, 2030"
    assert "Tuesday, June 4, 2030 at 8:00 AM CEST" in mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [invite] = [p for p in mail.message.iter_attachments() if p.get_filename() == "invite.ics"]
    ics = invite.get_content()
    assert isinstance(ics, str)
    assert "DTSTART:20300604T060000Z" in ics
    assert f"UID:{r.appointment_id}@apptremind" in ics
    assert harness.outbox_topics(r.business_id) == ["notification.sent.v1"]


async def test_through_a_shared_group_commit_many_reminders_share_commits_and_each_is_sent_once(
    harness: Notification,
) -> None:
    # As the streams worker runs it: the dispatcher and the processor's inbox claims in one GroupCommit.
    assert harness.runtime.pool is not None
    group = GroupCommit(harness.runtime.pool)
    dispatcher = Dispatcher(
        harness.runtime.pool,
        {"email": harness.dispatcher.provider("email"), "sms": harness.dispatcher.provider("sms")},
        harness.booking_client,
        harness.clock,
        transact=group,
    )
    made = consumers.dispatch_processor(harness.runtime.pool, dispatcher, RetryPolicy(max_attempts=3), group)
    made.sleep = no_wait
    reminders = [reminder(harness.booking, channel="sms" if n % 2 else "email") for n in range(10)]
    gone = reminder(harness.booking, current=False)
    events = [r.event() for r in (*reminders, gone)]

    first = await asyncio.gather(*(made.process(incoming(e)) for e in events))
    again = await asyncio.gather(*(made.process(incoming(e, 1)) for e in events))

    assert first == [Outcome.PROCESSED] * len(events)
    assert again == [Outcome.DUPLICATE] * len(events)
    for r in reminders:
        sent = sms_to(harness, r.recipient) if r.channel == "sms" else mails_to(harness, r.recipient)
        assert len(sent) == 1
        assert harness.delivery(r.business_id, r.key) == ("sent", "", 1)
    assert harness.delivery(gone.business_id, gone.key) == ("skipped", "appointment_changed", 0)


async def test_booking_says_not_current_so_it_is_skipped_and_nothing_is_sent(harness: Notification) -> None:
    r = reminder(harness.booking, current=False)
    assert await processor(harness).process(incoming(r.event())) is Outcome.PROCESSED
    assert harness.delivery(r.business_id, r.key) == ("skipped", "appointment_changed", 0)
    assert mails_to(harness, r.recipient) == []
    # A cancel that lands after the reminder was queued wins too.
    c = reminder(harness.booking)
    harness.booking.appointments[c.token].status = "cancelled"
    assert await processor(harness).process(incoming(c.event())) is Outcome.PROCESSED
    assert harness.delivery(c.business_id, c.key) == ("skipped", "appointment_changed", 0)
    assert harness.outbox_topics(r.business_id) == []


async def test_opted_out_recipients_are_skipped(harness: Notification) -> None:
    email = reminder(harness.booking)
    harness.db.execute(
        "INSERT INTO opt_out (business_id, channel, address) VALUES (%s, 'email', %s)",
        (email.business_id, email.recipient),
    )
    assert await processor(harness).process(incoming(email.event())) is Outcome.PROCESSED
    assert harness.delivery(email.business_id, email.key) == ("skipped", "opted_out", 0)
    assert mails_to(harness, email.recipient) == []

    # STOP, sent as an inbound SMS, opts the number out of every business's texts.
    sms = reminder(harness.booking, channel="sms")
    reply = await inbound(harness, sms.recipient, "stop")
    assert reply.action == "opted_out"
    assert await processor(harness).process(incoming(sms.event())) is Outcome.PROCESSED
    assert harness.delivery(sms.business_id, sms.key) == ("skipped", "opted_out", 0)
    assert sms_to(harness, sms.recipient) == []
    # START opts it back in.
    assert (await inbound(harness, sms.recipient, "Start")).action == "opted_in"
    later = reminder(harness.booking, channel="sms", recipient=sms.recipient)
    assert await processor(harness).process(incoming(later.event())) is Outcome.PROCESSED
    assert harness.delivery(later.business_id, later.key)[0] == "sent"
    assert len(sms_to(harness, sms.recipient)) == 1


async def test_late_sms_in_quiet_hours_is_skipped_but_email_still_goes(harness: Notification) -> None:
    # Due at 18:00 Berlin but handled at 22:30 Berlin (a backlog): no texts at night.
    remind_at = dt.datetime(2030, 6, 3, 16, 0, tzinfo=dt.UTC)
    harness.clock.set(dt.datetime(2030, 6, 3, 20, 30, tzinfo=dt.UTC))
    start = dt.datetime(2030, 6, 4, 9, 0, tzinfo=dt.UTC)
    sms = reminder(harness.booking, channel="sms", remind_at=remind_at, start=start)
    email = reminder(harness.booking, channel="email", remind_at=remind_at, start=start)
    for r in (sms, email):
        assert await processor(harness).process(incoming(r.event())) is Outcome.PROCESSED
    assert harness.delivery(sms.business_id, sms.key) == ("skipped", "quiet_hours", 0)
    assert harness.delivery(email.business_id, email.key)[0] == "sent"
    assert sms_to(harness, sms.recipient) == []
    # On time, the same hour is fine: booking already placed remind_at outside quiet hours.
    harness.clock.set(dt.datetime(2030, 6, 3, 20, 31, tzinfo=dt.UTC))
    on_time = reminder(
        harness.booking, channel="sms", remind_at=dt.datetime(2030, 6, 3, 20, 30, tzinfo=dt.UTC), start=start
    )
    assert await processor(harness).process(incoming(on_time.event())) is Outcome.PROCESSED
    assert harness.delivery(on_time.business_id, on_time.key)[0] == "sent"


async def test_a_reminder_after_the_appointment_started_is_skipped(harness: Notification) -> None:
    r = reminder(harness.booking, start=NOW + dt.timedelta(hours=1))
    harness.clock.set(NOW + dt.timedelta(hours=2))
    assert await processor(harness).process(incoming(r.event())) is Outcome.PROCESSED
    assert harness.delivery(r.business_id, r.key) == ("skipped", "too_late", 0)


async def test_retryable_failures_are_retried_until_the_send_succeeds(harness: Notification) -> None:
    r = reminder(harness.booking)
    made = processor(harness)
    harness.smtp.fail_ratio = 1.0  # every message answered 451
    waits: list[float] = []

    async def heal_after_two(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 2:
            harness.smtp.fail_ratio = 0.0

    made.sleep = heal_after_two
    assert await made.process(incoming(r.event())) is Outcome.PROCESSED
    assert len(waits) == 2
    assert harness.delivery(r.business_id, r.key) == ("sent", "", 3)
    assert len(mails_to(harness, r.recipient)) == 1

    # booking-service down for a moment: retried the same way.
    b = reminder(harness.booking)
    harness.booking.unavailable = 2
    assert await processor(harness).process(incoming(b.event())) is Outcome.PROCESSED
    assert harness.delivery(b.business_id, b.key) == ("sent", "", 1)


async def test_a_failing_send_goes_to_the_dlq_and_its_replay_delivers(
    harness: Notification, kafka: KafkaBroker
) -> None:
    r = reminder(harness.booking)
    harness.smtp.fail_ratio = 1.0
    assert await processor(harness, attempts=2).process(incoming(r.event())) is Outcome.DEAD_LETTERED
    status, _, attempts = harness.delivery(r.business_id, r.key)
    assert (status, attempts) == ("queued", 2)
    assert harness.outbox_topics(r.business_id) == [DUE + DLQ_SUFFIX]
    assert mails_to(harness, r.recipient) == []

    harness.smtp.fail_ratio = 0.0
    with running_relay(harness.db.dsn, kafka):
        await asyncio.to_thread(
            read_until,
            kafka.bootstrap_servers,
            [DUE + DLQ_SUFFIX],
            done=lambda rs: len(rs) >= 1,
            keep=lambda rec: rec.key == r.business_id.encode(),
            settle_s=0,
        )
    moved = await asyncio.to_thread(dlq.replay, kafka.bootstrap_servers, DUE)
    assert moved >= 1
    [record] = await asyncio.to_thread(
        read_until,
        kafka.bootstrap_servers,
        [DUE],
        done=lambda rs: len(rs) >= 1,
        keep=lambda rec: rec.key == r.business_id.encode(),
    )
    replayed = Incoming(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in record.headers.items()],
    )
    assert record.headers.get("dlq-replayed-at")
    assert await processor(harness).process(replayed) is Outcome.PROCESSED
    assert harness.delivery(r.business_id, r.key)[0] == "sent"
    assert len(mails_to(harness, r.recipient)) == 1


async def test_poison_goes_to_the_dlq_at_once(harness: Notification) -> None:
    business_id = str(uuid.uuid4())
    poison = Incoming(DUE, 0, 0, business_id.encode(), b"\x00not an envelope", [])
    assert await processor(harness).process(poison) is Outcome.DEAD_LETTERED
    assert harness.outbox_topics(business_id) == [DUE + DLQ_SUFFIX]


async def inbound(h: Notification, number: str, body: str) -> pb.HandleInboundSmsResponse:
    params = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": number, "To": "+15005550006", "Body": body}
    url = f"{WEBHOOK_BASE}/inbound"
    return await h.client.call(
        "HandleInboundSms",
        pb.HandleInboundSmsRequest(
            webhook=pb.ProviderWebhook(
                url=url, params=params, signature=twilio_signature(SMS_TOKEN, url, params)
            )
        ),
        pb.HandleInboundSmsResponse,
    )


async def status_callback(
    h: Notification, delivery_id: str, sid: str, status: str
) -> pb.RecordProviderStatusResponse:
    params = {
        "MessageSid": sid,
        "MessageStatus": status,
        "AccountSid": h.sms.account_sid,
        "To": "+4915100000000",
    }
    url = f"{WEBHOOK_BASE}/status?delivery={delivery_id}"
    return await h.client.call(
        "RecordProviderStatus",
        pb.RecordProviderStatusRequest(
            webhook=pb.ProviderWebhook(
                url=url, params=params, signature=twilio_signature(SMS_TOKEN, url, params)
            )
        ),
        pb.RecordProviderStatusResponse,
    )


async def sent_sms(h: Notification) -> tuple[Reminder, str, str]:
    r = reminder(h.booking, channel="sms")
    assert await processor(h).process(incoming(r.event())) is Outcome.PROCESSED
    [(delivery_id, sid)] = h.db.execute(
        "SELECT delivery_id, provider_message_id FROM delivery WHERE business_id = %s", (r.business_id,)
    )
    return r, str(delivery_id), str(sid)


async def test_sms_status_callbacks_move_the_delivery_forward_only(harness: Notification) -> None:
    r, delivery_id, sid = await sent_sms(harness)
    [body] = sms_to(harness, r.recipient)
    assert body.startswith("Reminder: Haircut at Hair by Ana, Tuesday, June 4, 2030 at 8:00 AM CEST.")
    assert sid.startswith("SM")
    assert (
        await status_callback(harness, delivery_id, sid, "delivered")
    ).status == pb.DeliveryStatus.DELIVERED
    # A late "sent" does not move it back.
    late = await status_callback(harness, delivery_id, sid, "sent")
    assert (late.matched, late.status) == (True, pb.DeliveryStatus.DELIVERED)
    assert harness.delivery(r.business_id, r.key)[0] == "delivered"
    unknown = await status_callback(harness, str(uuid.uuid4()), "SMnope", "delivered")
    assert unknown.matched is False
    assert harness.runtime.pool is not None
    async with unit_of_work(harness.runtime.pool) as conn:
        daily = await repository.daily(conn, uuid.UUID(r.business_id), harness.clock.now().date())
    assert daily["sms"]["delivered"] == 1


async def test_replies_confirm_or_cancel_the_latest_reminded_appointment(harness: Notification) -> None:
    r, _, _ = await sent_sms(harness)
    confirmed = await inbound(harness, r.recipient, " c ")
    assert (confirmed.action, harness.booking.calls[-1]) == ("confirmed", ("ConfirmAppointment", r.token))
    cancelled = await inbound(harness, r.recipient, "X")
    assert (cancelled.action, harness.booking.calls[-1]) == ("cancelled", ("CancelAppointment", r.token))
    assert harness.booking.appointments[r.token].status == "cancelled"
    # booking refuses to cancel twice; the customer is told so.
    again = await inbound(harness, r.recipient, "x")
    assert (again.action, again.reply) == (
        "refused",
        "Sorry, that cannot be done any more. Please contact the business.",
    )
    assert (await inbound(harness, r.recipient, "thanks!")).action == "ignored"
    assert (await inbound(harness, "+4930000000", "C")).action == "no_appointment"
    # Outside the reply window the reminder no longer counts.
    harness.clock.advance(dt.timedelta(days=15))
    assert (await inbound(harness, r.recipient, "C")).action == "no_appointment"


async def test_a_booking_gets_one_confirmation_email_with_the_invite(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    confirmations = consumers.confirmation_processor(harness.runtime.pool, harness.dispatcher)
    business_id, appointment_id = str(uuid.uuid4()), str(uuid.uuid4())
    address = f"c-{appointment_id[:8]}@example.com"
    start = NOW + dt.timedelta(days=3)
    booked = booked_event(business_id, appointment_id, address, start)
    assert await confirmations.process(incoming(booked)) is Outcome.PROCESSED
    assert await confirmations.process(incoming(booked)) is Outcome.DUPLICATE
    moved = booked_event(business_id, appointment_id, address, start + dt.timedelta(days=1), rescheduled=True)
    assert await confirmations.process(incoming(moved)) is Outcome.PROCESSED
    first, second = mails_to(harness, address)
    assert first.message["Subject"] == "Gebucht: Haircut am Donnerstag, 6. Juni 2030"
    assert second.message["Subject"] == "Gebucht: Haircut am Freitag, 7. Juni 2030"
    for mail in (first, second):
        assert [p.get_filename() for p in mail.message.iter_attachments()] == ["invite.ics"]


async def test_a_provider_with_its_own_retry_policy_is_retried_under_it(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    dispatcher = Dispatcher(
        harness.runtime.pool,
        {"email": harness.dispatcher.provider("email")},
        harness.booking_client,
        harness.clock,
        provider_policies={"smtp": RetryPolicy(max_attempts=3, base_delay_s=0.01)},
    )
    made = consumers.dispatch_processor(harness.runtime.pool, dispatcher, RetryPolicy(max_attempts=10))
    made.sleep = no_wait
    r = reminder(harness.booking)
    harness.smtp.fail_ratio = 1.0
    assert await made.process(incoming(r.event())) is Outcome.DEAD_LETTERED
    assert harness.delivery(r.business_id, r.key) == ("queued", "", 3)
