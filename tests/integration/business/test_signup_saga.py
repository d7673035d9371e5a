"""The signup saga's business step: auth.user.created.v1 -> exactly one business, its default reminder
policy and one business.created.v1, however often the event arrives."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from apptremind_business import service as business_service
from apptremind_business.bootstrap import SPEC
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import BusinessDraft
from apptremind_gen.apptremind.business.v1 import GetReminderPolicyRequest, GetReminderPolicyResponse
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.auth.v1 import UserCreated
from apptremind_gen.apptremind.events.business.v1 import BusinessCreated, ReminderPolicyChanged
from apptremind_platform import outbox
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import decode
from apptremind_platform.processing import MessageProcessor, Outcome
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import read_until
from tests.fixtures.relay import running_relay
from tests.fixtures.services import database_for, running_service
from tests.integration.business.support import Harness, incoming, unique_slug, user_created

CREATED = "business.created.v1"


def processor_of(harness: Harness) -> MessageProcessor:
    assert harness.runtime.pool is not None
    return SPEC.processors[0](harness.runtime.pool, harness.runtime.settings)


def business_id_of(user_id: str) -> str:
    return str(business_service.signup_business_id(uuid.UUID(user_id)))


def businesses_of(harness: Harness, user_id: str) -> list[tuple[object, ...]]:
    return harness.db.execute(
        "SELECT business_id, name, slug, time_zone, locale, currency FROM business WHERE owner_user_id = %s",
        (user_id,),
    )


async def test_a_duplicated_and_replayed_user_created_makes_one_business(harness: Harness) -> None:
    processor = processor_of(harness)
    user_id, slug = str(uuid.uuid4()), unique_slug()
    event = user_created(user_id, slug, name="Ana's Salon", time_zone="America/New_York", currency="USD")

    assert await processor.process(incoming(event, offset=1)) is Outcome.PROCESSED
    # The same message delivered again: the inbox drops it.
    assert await processor.process(incoming(event, offset=1)) is Outcome.DUPLICATE
    # The same signup re-emitted under a new message id (a replay): the derived business id catches it.
    replay = user_created(user_id, slug, name="Ana's Salon", time_zone="America/New_York", currency="USD")
    assert replay.id != event.id
    assert await processor.process(incoming(replay, offset=2)) is Outcome.PROCESSED

    business_id = business_id_of(user_id)
    assert businesses_of(harness, user_id) == [
        (uuid.UUID(business_id), "Ana's Salon", slug, "America/New_York", "en-US", "USD")
    ]
    created = harness.events(CREATED, business_id)
    assert created == [
        BusinessCreated(
            business_id=business_id,
            name="Ana's Salon",
            slug=slug,
            time_zone="America/New_York",
            locale="en-US",
            currency="USD",
            owner_user_id=user_id,
        )
    ]
    # The default reminder policy exists and was announced once, for booking-service's read model.
    policies = harness.events("business.reminder_policy.changed.v1", business_id)
    assert len(policies) == 1
    assert isinstance(policies[0], ReminderPolicyChanged)
    assert policies[0].policy is not None
    assert list(policies[0].policy.offsets_minutes) == [1440, 120]

    owner = harness.metadata(user_id, {business_id: "owner"})
    response = await harness.call(
        "GetReminderPolicy",
        GetReminderPolicyRequest(business_id=business_id),
        GetReminderPolicyResponse,
        owner,
    )
    assert response.policy is not None
    assert list(response.policy.offsets_minutes) == [1440, 120]
    assert list(response.policy.channels) == [Channel.EMAIL]
    assert (response.policy.quiet_hours_start, response.policy.quiet_hours_end) == ("", "")
    assert dict(response.policy.templates) == {"reminder_email": "default", "reminder_sms": "default"}


async def test_a_taken_slug_gets_the_first_free_suffix(harness: Harness) -> None:
    processor = processor_of(harness)
    slug = unique_slug("studio")
    users = [str(uuid.uuid4()) for _ in range(4)]
    for user_id in users[:3]:
        assert await processor.process(incoming(user_created(user_id, slug))) is Outcome.PROCESSED
    assert [businesses_of(harness, u)[0][2] for u in users[:3]] == [slug, f"{slug}-2", f"{slug}-3"]

    # The first free suffix, not one past the highest: a business that signed up as `<slug>-5` directly
    # leaves `-4` free for the next collision.
    assert (
        await processor.process(incoming(user_created(str(uuid.uuid4()), f"{slug}-5"))) is Outcome.PROCESSED
    )
    assert await processor.process(incoming(user_created(users[3], slug))) is Outcome.PROCESSED
    assert businesses_of(harness, users[3])[0][2] == f"{slug}-4"
    # The event says which slug the business really got.
    (event,) = harness.events(CREATED, business_id_of(users[1]))
    assert event.slug == f"{slug}-2"


async def test_a_suffix_on_a_63_character_slug_still_fits(harness: Harness) -> None:
    processor = processor_of(harness)
    slug = ("x" + uuid.uuid4().hex * 2)[:62] + "y"
    assert len(slug) == 63
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert await processor.process(incoming(user_created(first, slug))) is Outcome.PROCESSED
    assert await processor.process(incoming(user_created(second, slug))) is Outcome.PROCESSED
    got = str(businesses_of(harness, second)[0][2])
    assert got == slug[:61] + "-2"
    assert len(got) == 63


async def test_an_invalid_draft_goes_to_the_dlq_and_creates_nothing(harness: Harness) -> None:
    processor = processor_of(harness)
    user_id = str(uuid.uuid4())
    event = user_created(user_id, unique_slug(), time_zone="Mars/Base")
    assert await processor.process(incoming(event)) is Outcome.DEAD_LETTERED
    assert businesses_of(harness, user_id) == []
    assert harness.events(CREATED, business_id_of(user_id)) == []
    dead = harness.db.execute(
        "SELECT headers->>'dlq-error', headers->>'dlq-error-type', headers->>'dlq-attempts' FROM outbox "
        "WHERE topic = %s AND headers->>'ce_id' = %s",
        ("auth.user.created.v1.dlq", str(event.id)),
    )
    # Dead-lettered on the first attempt: retrying cannot fix a bad draft.
    assert dead == [
        (f"invalid_time_zone: {'Mars/Base'!r} is not an IANA time zone name", "PermanentError", "1")
    ]


@pytest.mark.parametrize("draft", ["none", "empty"])
async def test_an_invited_user_without_a_draft_is_ignored(harness: Harness, draft: str) -> None:
    processor = processor_of(harness)
    user_id = str(uuid.uuid4())
    event = user_created(user_id, None)
    if draft == "empty":
        assert isinstance(event.data, UserCreated)
        event.data.business = BusinessDraft()
    before = harness.snapshot()
    assert await processor.process(incoming(event)) is Outcome.PROCESSED
    after = harness.snapshot()
    assert businesses_of(harness, user_id) == []
    # Only the inbox claim was written.
    assert {t for t in after if after[t] != before[t]} == {"inbox"}


async def test_saga_over_real_kafka_creates_one_business_and_publishes_one_event(
    postgres: PostgresServer, kafka: KafkaBroker, service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    """auth's outbox -> relay -> Kafka -> business consumer -> business outbox -> relay -> Kafka.

    `service_db` stands in for auth-service's database: its outbox holds the UserCreated events, published
    by a real relay. The same message twice, a replay under a new id, then a sentinel signup on the same
    partition key: once the sentinel's business exists, every earlier message has been handled.
    """
    business_db = database_for(postgres, SPEC)
    user_id, sentinel = str(uuid.uuid4()), str(uuid.uuid4())
    key = f"signup-{uuid.uuid4().hex[:8]}"
    slug = unique_slug("kafka")
    event = user_created(user_id, slug, key=key)
    replay = user_created(user_id, slug, key=key)
    last = user_created(sentinel, slug, key=key)
    async with unit_of_work(pool) as conn:
        for message in (event, event, replay, last):
            await outbox.add(conn, message, source="auth")

    business_id = business_id_of(user_id)
    sentinel_business = business_id_of(sentinel)
    async with running_service(SPEC, business_db, kafka):
        with running_relay(service_db.dsn, kafka):
            deadline = asyncio.get_running_loop().time() + 90
            while not business_db.execute(
                "SELECT 1 FROM business WHERE business_id = %s", (sentinel_business,)
            ):
                assert asyncio.get_running_loop().time() < deadline, "the saga never created the business"
                await asyncio.sleep(0.1)

    rows = business_db.execute("SELECT business_id, slug FROM business WHERE owner_user_id = %s", (user_id,))
    assert rows == [(uuid.UUID(business_id), slug)]
    # The sentinel collided on the slug and got the suffix.
    assert business_db.execute("SELECT slug FROM business WHERE business_id = %s", (sentinel_business,)) == [
        (f"{slug}-2",)
    ]
    # Every distinct message was handled once: the duplicate never got past the inbox.
    handled = business_db.execute(
        "SELECT message_id FROM inbox WHERE consumer = 'business' AND message_id = ANY(%s) ORDER BY 1",
        ([str(event.id), str(replay.id), str(last.id)],),
    )
    assert handled == sorted((str(m.id),) for m in (event, replay, last))

    # business-service's own relay publishes exactly one business.created.v1 for the business.
    with running_relay(business_db.dsn, kafka):
        published = await asyncio.to_thread(
            read_until,
            kafka.bootstrap_servers,
            [CREATED],
            lambda records: len(records) >= 1,
            lambda record: record.key == business_id.encode(),
            settle_s=2.0,
        )
    assert len(published) == 1
    data = decode(CREATED, published[0].value).data
    assert isinstance(data, BusinessCreated)
    assert (data.business_id, data.owner_user_id, data.slug) == (business_id, user_id, slug)
