"""The plan's limits in the dispatch pipeline, against a real billing-service (real Postgres, real gRPC with
notification's service token), the real SMTP sink and the real SMS server: every SMS holds a credit of the
plan's SMS quota; once it is spent the reminder goes out by e-mail instead (or not at all when an e-mail
reminder goes out anyway), never as an SMS over the quota. A business's own template is used only while its
plan includes custom templates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from apptremind_billing.bootstrap import build_spec as build_billing_spec
from apptremind_billing.settings import BillingSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_notification import consumers, repository
from apptremind_notification.dispatch import SMS_QUOTA_EXCEEDED, Dispatcher
from apptremind_notification.sms_credits import GrpcSmsCredits
from apptremind_platform.clock import SettableClock
from apptremind_platform.db import unit_of_work
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.processing import MessageProcessor, Outcome, RetryPolicy
from tests.fixtures.db import ServiceDb
from tests.fixtures.services import database_for, running_service
from tests.integration.notification.conftest import Notification
from tests.integration.notification.support import NOW, entitle, incoming, reminder

FREE_SMS = 10  # the free plan's sms_per_month


async def no_wait(_: float) -> None:
    return None


@pytest.fixture
async def metered(
    harness: Notification, postgres: PostgresServer, kafka: KafkaBroker
) -> AsyncIterator[tuple[MessageProcessor, ServiceDb]]:
    """The harness's pipeline with SMS metered by a real billing-service that trusts the same keys."""
    # Billing's usage periods are calendar months by billing's clock: on the wall clock, a test running
    # across midnight at the end of a month would see two quotas (and two usage rows). Billing gets the
    # harness's fixed time instead.
    spec = build_billing_spec(clock=SettableClock(NOW), billing=BillingSettings())
    db = database_for(postgres, spec)
    async with (
        running_service(
            spec,
            db,
            kafka,
            jwks=harness.keys.jwks,
            # Not the default group "billing": that is the session billing-service's of the business tests,
            # whose partitions (and events) this one would otherwise share.
            consumer_group=f"billing-{uuid.uuid4().hex[:8]}",
            consumer_offset_reset="latest",
        ) as billing,
        open_channel(f"127.0.0.1:{billing.port}") as channel,
    ):
        assert harness.runtime.pool is not None
        dispatcher = Dispatcher(
            harness.runtime.pool,
            {"email": harness.dispatcher.provider("email"), "sms": harness.dispatcher.provider("sms")},
            harness.booking_client,
            harness.clock,
            # A commit that missed its deadline would leave the credit reserved, not used (the test counts
            # both): a margin for the batch of concurrent reservations on a loaded machine.
            sms_credits=GrpcSmsCredits(channel, harness.keys.service_tokens("notification"), timeout_s=30.0),
        )
        processor = consumers.dispatch_processor(
            harness.runtime.pool, dispatcher, RetryPolicy(max_attempts=3)
        )
        processor.sleep = no_wait
        yield processor, db


def used_sms(billing_db: ServiceDb, business_id: str) -> tuple[int, int]:
    [(used, reserved)] = billing_db.execute(
        "SELECT used, reserved FROM usage_period WHERE business_id = %s AND meter = 'sms'", (business_id,)
    )
    return int(used), int(reserved)  # type: ignore[call-overload]


async def test_sms_beyond_the_quota_goes_out_by_email_instead(
    harness: Notification, metered: tuple[MessageProcessor, ServiceDb]
) -> None:
    processor, billing_db = metered
    business_id = str(uuid.uuid4())
    reminders = [
        reminder(
            harness.booking,
            channel="sms",
            business_id=business_id,
            extra={"customer_email": f"sms-{n}@example.com", "reminder_channels": "sms"},
        )
        for n in range(FREE_SMS + 2)
    ]
    # Concurrently, as the worker handles a batch: the quota is enforced by billing, not by order.
    events = [r.event() for r in reminders]
    outcomes = await asyncio.gather(*(processor.process(incoming(e)) for e in events))
    assert outcomes == [Outcome.PROCESSED] * len(reminders)

    texted = [r for r in reminders if any(m.to == r.recipient for m in harness.sms.messages())]
    instead = [r for r in reminders if r not in texted]
    assert len(texted) == FREE_SMS and len(instead) == 2
    for r in texted:
        assert harness.delivery(business_id, r.key) == ("sent", "", 1)
    for r in instead:
        assert harness.delivery(business_id, r.key) == ("skipped", SMS_QUOTA_EXCEEDED, 0)
        [mail] = [m for m in harness.smtp.messages() if r.data["customer_email"] in m.envelope_to]
        assert "Haircut" in mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert harness.delivery(business_id, f"{r.key}|sms-quota")[0] == "sent"
    assert used_sms(billing_db, business_id) == (FREE_SMS, 0)

    # Delivered again (a redelivery): nothing more is sent or counted.
    again = await asyncio.gather(*(processor.process(incoming(e, 1)) for e in events))
    assert again == [Outcome.DUPLICATE] * len(reminders)
    assert used_sms(billing_db, business_id) == (FREE_SMS, 0)


async def test_no_email_instead_when_an_email_reminder_goes_out_anyway(
    harness: Notification, metered: tuple[MessageProcessor, ServiceDb]
) -> None:
    processor, billing_db = metered
    business_id = str(uuid.uuid4())
    both = {"customer_email": "both@example.com", "reminder_channels": "email,sms"}
    reminders = [
        reminder(harness.booking, channel="sms", business_id=business_id, extra=both)
        for _ in range(FREE_SMS + 1)
    ]
    for r in reminders:
        assert await processor.process(incoming(r.event())) is Outcome.PROCESSED
    assert harness.delivery(business_id, reminders[-1].key) == ("skipped", SMS_QUOTA_EXCEEDED, 0)
    assert not [m for m in harness.smtp.messages() if "both@example.com" in m.envelope_to]
    assert used_sms(billing_db, business_id) == (FREE_SMS, 0)


async def test_a_failed_sms_gives_its_credit_back(
    harness: Notification, metered: tuple[MessageProcessor, ServiceDb]
) -> None:
    processor, billing_db = metered
    business_id = str(uuid.uuid4())
    harness.sms.fail_ratio = 1.0
    r = reminder(harness.booking, channel="sms", business_id=business_id)
    assert await processor.process(incoming(r.event())) is Outcome.DEAD_LETTERED
    assert used_sms(billing_db, business_id) == (0, 0)


async def test_own_templates_only_while_the_plan_includes_them(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    business_id = str(uuid.uuid4())
    async with unit_of_work(harness.runtime.pool) as conn:
        await repository.insert_template(
            conn, uuid.UUID(business_id), "reminder", "email", "en", "Our own: {{ service_name }}", "See you!"
        )
    processor = consumers.dispatch_processor(
        harness.runtime.pool, harness.dispatcher, RetryPolicy(max_attempts=3)
    )

    free = reminder(harness.booking, business_id=business_id)
    assert await processor.process(incoming(free.event())) is Outcome.PROCESSED
    entitle(harness.db, business_id, "pro")
    pro = reminder(harness.booking, business_id=business_id)
    assert await processor.process(incoming(pro.event())) is Outcome.PROCESSED

    subjects = {
        r.recipient: [m.message["Subject"] for m in harness.smtp.messages() if r.recipient in m.envelope_to]
        for r in (free, pro)
    }
    assert subjects[free.recipient] == ["Reminder: Haircut on Tuesday, June 4, 2030"]
    assert subjects[pro.recipient] == ["Our own: Haircut"]
