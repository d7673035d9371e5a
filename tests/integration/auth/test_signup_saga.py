"""The auth side of the signup saga: business.created.v1 grants the owner membership exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import GetMeRequest, GetMeResponse, Role
from apptremind_gen.apptremind.events.auth.v1 import MembershipGranted
from apptremind_platform import outbox
from apptremind_platform.db import open_pool, unit_of_work
from apptremind_platform.envelope import decode
from apptremind_platform.processing import Outcome
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import read_until
from tests.fixtures.relay import running_relay
from tests.integration.auth.harness import Auth, business_created, claims, started_auth

GRANTED = "auth.membership.granted.v1"


def granted_events(auth: Auth, business_id: str) -> list[MembershipGranted]:
    events = [event for _, event in auth.outbox(GRANTED, business_id)]
    return [event for event in events if isinstance(event, MembershipGranted)]


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_duplicates_and_replays_grant_one_membership_and_one_event(auth: Auth) -> None:
    signed = await auth.sign_up()
    assert signed.user is not None and signed.session is not None
    user_id, business_id = signed.user.user_id, str(uuid.uuid4())
    event = business_created(business_id, user_id)

    assert await auth.deliver(event) is Outcome.PROCESSED
    # Kafka redelivers the same message (same id): the inbox drops it.
    assert await auth.deliver(event, offset=1) is Outcome.DUPLICATE
    # business-service replays the fact under a new message id: the membership key drops it.
    assert await auth.deliver(business_created(business_id, user_id), offset=2) is Outcome.PROCESSED

    assert auth.db.execute("SELECT business_id::text, user_id::text, role FROM memberships") == [
        (business_id, user_id, "owner")
    ]
    events = granted_events(auth, business_id)
    assert [(e.business_id, e.user_id, e.role) for e in events] == [(business_id, user_id, "owner")]

    # The owner's next access token lists the business, and GetMe reads it from the database.
    session = await auth.refresh(signed.session.refresh_token)
    assert claims(session.access_token)["mem"] == {business_id: "owner"}
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=session.access_token)
    assert [(m.business_id, m.user_id, m.role) for m in me.memberships] == [
        (business_id, user_id, Role.OWNER)
    ]


async def test_an_unknown_owner_goes_to_the_dlq_without_a_membership(auth: Auth) -> None:
    business_id = str(uuid.uuid4())
    assert await auth.deliver(business_created(business_id, str(uuid.uuid4()))) is Outcome.DEAD_LETTERED
    assert await auth.deliver(business_created(business_id, "not-a-uuid")) is Outcome.DEAD_LETTERED
    assert auth.count("SELECT count(*) FROM memberships") == 0
    assert auth.count("SELECT count(*) FROM outbox WHERE topic = 'business.created.v1.dlq'") == 2
    assert granted_events(auth, business_id) == []


async def test_saga_step_through_kafka_grants_once_and_publishes_once(
    postgres: PostgresServer, kafka: KafkaBroker, service_db: ServiceDb
) -> None:
    """business-service's outbox (a stand-in database with the platform tables) -> relay -> Kafka -> the
    auth-service's own consumer -> membership + outbox -> auth's relay -> Kafka."""
    async with started_auth(postgres, kafka, consume=True) as auth:
        signed = await auth.sign_up()
        assert signed.user is not None
        user_id, business_id = signed.user.user_id, str(uuid.uuid4())
        first = business_created(business_id, user_id)
        replay = business_created(business_id, user_id)
        business_pool = await open_pool(service_db.dsn, 1, 2)
        try:
            # The same message twice (a relay crash between Kafka's ack and its commit), then a replay
            # under a new id; one key, so one partition, so they arrive in this order.
            async with unit_of_work(business_pool) as conn:
                for event in (first, first, replay):
                    await outbox.add(conn, event, source="business")
        finally:
            await business_pool.close()

        with running_relay(service_db.dsn, kafka), running_relay(auth.db.dsn, kafka):
            # The replay is the last of the three on its partition: once the inbox holds it, all were handled.
            await eventually(
                lambda: (
                    auth.count(
                        "SELECT count(*) FROM inbox WHERE consumer = 'auth' AND message_id = %s",
                        (str(replay.id),),
                    )
                    == 1
                ),
                "the consumer to handle the replay",
            )
            records = await asyncio.to_thread(
                read_until,
                kafka.bootstrap_servers,
                [GRANTED],
                lambda rs: len(rs) >= 1,
                lambda r: r.key == business_id.encode(),
                60.0,
                3.0,
            )
        assert (
            auth.count(
                "SELECT count(*) FROM inbox WHERE message_id = ANY(%s)", ([str(first.id), str(replay.id)],)
            )
            == 2
        )
        assert auth.db.execute("SELECT business_id::text, user_id::text, role FROM memberships") == [
            (business_id, user_id, "owner")
        ]
        assert len(granted_events(auth, business_id)) == 1
        published = [decode(GRANTED, r.value).data for r in records]
        assert [
            (e.business_id, e.user_id, e.role) for e in published if isinstance(e, MembershipGranted)
        ] == [(business_id, user_id, "owner")]
        assert len(published) == 1
