"""The read model fed by business events: upserts, replays harmless, and the same path over real Kafka."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from psycopg_pool import AsyncConnectionPool

from apptremind_booking import events
from apptremind_booking.bootstrap import build_spec
from apptremind_booking.grpc import SERVICE
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.business import v1 as business_pb
from apptremind_gen.apptremind.events.business import v1 as business_ev
from apptremind_platform import outbox
from apptremind_platform.clock import SettableClock
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import Event
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.processing import Outcome
from tests.fixtures.db import ServiceDb
from tests.fixtures.relay import running_relay
from tests.fixtures.services import database_for, running_service
from tests.integration.booking.support import NOW, Catalog, Harness, incoming, interval, utc

WEDNESDAY = (utc(2030, 6, 5, 6), utc(2030, 6, 5, 16))


async def slots(harness: Harness, business_id: str, service_id: str) -> list[str]:
    response = await harness.call(
        "GetAvailability",
        pb.GetAvailabilityRequest(
            business_id=business_id,
            service_id=service_id,
            from_time=WEDNESDAY[0],
            to_time=WEDNESDAY[1],
            time_zone="Europe/Berlin",
        ),
        pb.GetAvailabilityResponse,
    )
    return [s.local_start[11:16] for s in response.slots]


def schedule(business_id: str, staff_id: str, start: str, end: str) -> Event:
    return Event(
        events.SCHEDULE_CHANGED,
        business_id,
        business_ev.ScheduleChanged(
            business_id=business_id, staff_id=staff_id, hours=[interval(3, start, end)]
        ),
    )


async def test_events_upsert_and_replays_change_nothing(harness: Harness) -> None:
    tenant = await harness.tenant(Catalog(hours=[interval(3, "09:00", "10:00")]))
    assert await slots(harness, tenant.business_id, tenant.service_id) == ["09:00", "09:15", "09:30"]

    # A new schedule replaces the old one entirely.
    later = schedule(tenant.business_id, tenant.staff_ids[0], "14:00", "15:00")
    await harness.feed(later)
    assert await slots(harness, tenant.business_id, tenant.service_id) == ["14:00", "14:15", "14:30"]

    # The same message again is a duplicate; the older schedule re-sent under a new id would be a new
    # state, so a replay of the whole history ends where it started.
    assert harness.runtime.pool is not None
    processor = harness.spec.processors[0](harness.runtime.pool, harness.runtime.settings)
    assert await processor.process(incoming(later)) is Outcome.DUPLICATE
    for event in Catalog(hours=[interval(3, "09:00", "10:00")]).events(
        tenant.business_id, tenant.staff_ids, tenant.service_id
    ):
        replayed = dataclasses.replace(event, id=uuid.uuid4())
        assert await processor.process(incoming(replayed)) is Outcome.PROCESSED
    await harness.feed(dataclasses.replace(later, id=uuid.uuid4()))
    assert await slots(harness, tenant.business_id, tenant.service_id) == ["14:00", "14:15", "14:30"]
    # The whole schedule was replaced: one hours row, none of the replayed breaks left over.
    assert harness.count("weekly_interval", tenant.business_id) == 1


async def test_time_off_inactive_staff_and_inactive_services_remove_slots(harness: Harness) -> None:
    tenant = await harness.tenant(Catalog(hours=[interval(3, "09:00", "10:00")]))
    staff_id = tenant.staff_ids[0]
    await harness.feed(
        Event(
            events.DATE_OVERRIDE_ADDED,
            tenant.business_id,
            business_ev.DateOverrideAdded(
                date_override=business_pb.DateOverride(
                    override_id=str(uuid.uuid4()),
                    business_id=tenant.business_id,
                    staff_id=staff_id,
                    kind=business_pb.DateOverrideKind.TIME_OFF,
                    start_time=utc(2030, 6, 5, 7),
                    end_time=utc(2030, 6, 5, 7, 30),
                )
            ),
        )
    )
    assert await slots(harness, tenant.business_id, tenant.service_id) == ["09:30"]

    staff = business_pb.Staff(staff_id=staff_id, business_id=tenant.business_id, name="Sam", active=False)
    await harness.feed(Event(events.STAFF_CHANGED, tenant.business_id, business_ev.StaffChanged(staff=staff)))
    assert await slots(harness, tenant.business_id, tenant.service_id) == []
    staff.active = True
    await harness.feed(Event(events.STAFF_CHANGED, tenant.business_id, business_ev.StaffChanged(staff=staff)))
    assert await slots(harness, tenant.business_id, tenant.service_id) == ["09:30"]

    service = business_pb.Service(
        service_id=tenant.service_id,
        business_id=tenant.business_id,
        name="Cut",
        duration_minutes=30,
        staff_ids=[],
        active=True,
    )
    await harness.feed(
        Event(events.SERVICE_CHANGED, tenant.business_id, business_ev.ServiceChanged(service=service))
    )
    assert await slots(harness, tenant.business_id, tenant.service_id) == []


async def test_a_malformed_event_goes_to_the_dlq_not_the_read_model(harness: Harness) -> None:
    assert harness.runtime.pool is not None
    processor = harness.spec.processors[0](harness.runtime.pool, harness.runtime.settings)
    business_id = str(uuid.uuid4())
    bad = Event(
        events.SCHEDULE_CHANGED,
        business_id,
        business_ev.ScheduleChanged(business_id=business_id, staff_id="not-a-uuid"),
    )
    assert await processor.process(incoming(bad)) is Outcome.DEAD_LETTERED
    assert harness.topics(business_id) == [events.SCHEDULE_CHANGED + ".dlq"]


async def test_read_model_catches_up_over_real_kafka(
    postgres: PostgresServer, kafka: KafkaBroker, service_db: ServiceDb, pool: AsyncConnectionPool
) -> None:
    """business's outbox -> relay -> Kafka -> booking's consumer group -> read model -> availability.

    `service_db` stands in for business-service's database. The events are published before the booking
    service starts, as after an outage: its consumer group starts from the retained messages. The last
    event (the reminder policy) is the sentinel: per-key order within its topic is kept, and once every
    table has its row, the service answers availability from it.
    """
    clock = SettableClock(NOW)
    spec = build_spec(clock=clock, token_secret="kafka-test")
    booking_db = database_for(postgres, spec)
    business_id, staff_id, service_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    catalog = Catalog(hours=[interval(3, "09:00", "10:00")])
    published = list(catalog.events(business_id, [staff_id], service_id))
    async with unit_of_work(pool) as conn:
        for event in published:
            await outbox.add(conn, event, source="business")

    with running_relay(service_db.dsn, kafka):
        async with running_service(
            spec, booking_db, kafka, consumer_group=f"booking-{uuid.uuid4().hex[:8]}"
        ) as runtime:
            deadline = asyncio.get_running_loop().time() + 90
            tables = ("business", "staff", "weekly_interval", "service", "service_staff", "reminder_policy")
            while not all(
                booking_db.execute(f"SELECT 1 FROM {t} WHERE business_id = %s", (business_id,))
                for t in tables
            ):
                assert asyncio.get_running_loop().time() < deadline, "the read model never caught up"
                await asyncio.sleep(0.1)
            async with open_channel(f"127.0.0.1:{runtime.port}") as channel:
                client = AsyncServiceClient(channel, SERVICE)
                response = await client.call(
                    "GetAvailability",
                    pb.GetAvailabilityRequest(
                        business_id=business_id,
                        service_id=service_id,
                        from_time=WEDNESDAY[0],
                        to_time=WEDNESDAY[1],
                        time_zone="Europe/Berlin",
                    ),
                    pb.GetAvailabilityResponse,
                    timeout=20,
                )
    assert [s.local_start[11:16] for s in response.slots] == ["09:00", "09:15", "09:30"]
    # Each of this test's events handled exactly once (the shared topics also hold other tests' events,
    # which a new group reads too).
    ids = [str(event.id) for event in published]
    handled = booking_db.execute(
        "SELECT count(*) FROM inbox WHERE consumer = 'booking' AND message_id = ANY(%s)", (ids,)
    )
    assert handled == [(len(ids),)]
