"""BookAppointment: outbox events and reminder requests, idempotency, the pending cap, and the race for one
slot that the exclusion constraint decides."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import grpc.aio
import psycopg

from apptremind_booking import events, repository
from apptremind_booking.repository import IDEMPOTENCY_TTL
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.booking import v1 as ev
from apptremind_platform.db import unit_of_work
from tests.integration.booking.support import NOW, Catalog, Harness, expect_error, utc

# Wednesday 2030-06-05 10:00 in Berlin.
START = utc(2030, 6, 5, 8)


async def test_booking_writes_the_appointment_its_event_and_the_planned_reminders(harness: Harness) -> None:
    tenant = await harness.tenant()
    response = await harness.book(tenant, START)
    a = response.appointment
    assert a is not None and not response.replayed
    aid = a.appointment_id
    assert (a.start_time, a.end_time, a.status) == (
        START,
        START + dt.timedelta(minutes=30),
        pb.AppointmentStatus.BOOKED,
    )
    assert response.self_service_token

    assert harness.topics(tenant.business_id) == [events.APPOINTMENT_BOOKED] + [events.REMINDER_REQUESTED] * 4
    requested = harness.events(events.REMINDER_REQUESTED, tenant.business_id)
    wording = {
        "appointment_id": aid,
        "service_name": "Cut",
        "staff_name": "Sam 0",
        "customer_name": "Kim",
        "start_time": "2030-06-05T08:00:00+00:00",
        "end_time": "2030-06-05T08:30:00+00:00",
        "local_start": "2030-06-05T09:00:00+01:00",  # the customer's zone, Europe/London
        "business_time_zone": "Europe/Berlin",
        "customer_time_zone": "Europe/London",
        "locale": "en-GB",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "manage_token": response.self_service_token,
        "business_name": "Hair by Ana",
        "customer_email": "kim@example.com",
        "reminder_channels": "email,sms",
    }
    [booked] = harness.events(events.APPOINTMENT_BOOKED, tenant.business_id)
    assert booked == ev.AppointmentBooked(
        business_id=tenant.business_id,
        appointment_id=aid,
        staff_id=tenant.staff_ids[0],
        service_id=tenant.service_id,
        start_time=START,
        end_time=START + dt.timedelta(minutes=30),
        customer_email="kim@example.com",
        customer_phone="+4915112345678",
        template_data=wording,
    )
    # 24 h before (10:00 local), and 2 h before: 08:00 local, exactly when quiet hours (21:00-08:00) end.
    assert [(r.idempotency_key, r.channel, r.recipient) for r in requested] == [
        (f"{aid}|2030-06-04T08:00:00Z|email", Channel.EMAIL, "kim@example.com"),
        (f"{aid}|2030-06-04T08:00:00Z|sms", Channel.SMS, "+4915112345678"),
        (f"{aid}|2030-06-05T06:00:00Z|email", Channel.EMAIL, "kim@example.com"),
        (f"{aid}|2030-06-05T06:00:00Z|sms", Channel.SMS, "+4915112345678"),
    ]
    assert requested[0].remind_at == utc(2030, 6, 4, 8)
    assert all(r.template_data == wording for r in requested)
    rows = harness.db.execute(
        "SELECT idempotency_key FROM reminder WHERE business_id = %s ORDER BY 1", (tenant.business_id,)
    )
    assert [r[0] for r in rows] == sorted(r.idempotency_key for r in requested)


async def test_a_replay_returns_the_original_and_a_reused_key_is_refused(harness: Harness) -> None:
    tenant = await harness.tenant()
    first = await harness.book(tenant, START, key="key-1")
    again = await harness.book(tenant, START, key="key-1")
    assert again.replayed and not first.replayed
    assert again.appointment == first.appointment
    assert again.self_service_token == first.self_service_token
    assert harness.count("appointment", tenant.business_id) == 1
    assert harness.topics(tenant.business_id).count(events.APPOINTMENT_BOOKED) == 1

    await expect_error(
        harness.book(tenant, START + dt.timedelta(hours=1), key="key-1"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "idempotency_key_reused",
    )
    await expect_error(
        harness.book(tenant, START, key=" "), grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key_required"
    )
    assert harness.count("appointment", tenant.business_id) == 1

    # After 24 h the key is free again: a different request with it books anew.
    harness.clock.set(harness.clock.now() + IDEMPOTENCY_TTL + dt.timedelta(minutes=1))
    later = await harness.book(tenant, START + dt.timedelta(hours=3), key="key-1")
    assert not later.replayed
    assert later.appointment is not None and first.appointment is not None
    assert later.appointment.appointment_id != first.appointment.appointment_id


async def test_unavailable_and_taken_slots_write_nothing(harness: Harness) -> None:
    tenant = await harness.tenant()
    # 12:00 local is inside the break; 07:00 local is before opening; 10:05 is off the grid.
    for start in (utc(2030, 6, 5, 10), utc(2030, 6, 5, 5), START + dt.timedelta(minutes=5)):
        await expect_error(
            harness.book(tenant, start), grpc.StatusCode.FAILED_PRECONDITION, "slot_unavailable"
        )
    # Too soon: less than the 2 h minimum notice.
    await expect_error(
        harness.book(tenant, utc(2030, 6, 3, 7)), grpc.StatusCode.FAILED_PRECONDITION, "slot_unavailable"
    )
    assert harness.topics(tenant.business_id) == []
    assert harness.count("idempotency_key", tenant.business_id) == 0


async def test_pending_bookings_per_contact_are_capped(harness: Harness) -> None:
    tenant = await harness.tenant()
    for n in range(5):
        await harness.book(tenant, START + dt.timedelta(days=n), phone="")
    # The same e-mail, even with a phone added, is the same customer.
    await expect_error(
        harness.book(tenant, utc(2030, 6, 12, 8), phone="+4915100000000"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too_many_pending_bookings",
    )
    # Another customer is not affected.
    await harness.book(tenant, utc(2030, 6, 12, 8), email="other@example.com", phone="")


async def test_fifty_concurrent_bookings_of_one_slot_one_wins(harness: Harness) -> None:
    tenant = await harness.tenant()

    async def attempt(n: int) -> str:
        try:
            await harness.book(tenant, START, email=f"c{n}@example.com", phone="")
        except grpc.aio.AioRpcError as exc:
            reason = dict(exc.trailing_metadata() or ()).get("x-error-reason")
            return f"{exc.code().name}:{reason}"
        return "OK"

    results = await asyncio.gather(*(attempt(n) for n in range(50)))
    assert results.count("OK") == 1, results
    # Losers are told the slot is taken, whether they lost at the constraint or at the re-check.
    assert set(results) == {"OK", "ALREADY_EXISTS:slot_taken"}, results
    assert harness.count("appointment", tenant.business_id) == 1
    assert harness.count("idempotency_key", tenant.business_id) == 1
    assert harness.topics(tenant.business_id).count(events.APPOINTMENT_BOOKED) == 1


async def test_any_staff_books_a_free_colleague(harness: Harness) -> None:
    tenant = await harness.tenant(Catalog(staff=2))
    one = await harness.book(tenant, START, staff_id="")
    two = await harness.book(tenant, START, staff_id="", email="b@example.com")
    assert one.appointment is not None and two.appointment is not None
    assert {one.appointment.staff_id, two.appointment.staff_id} == set(tenant.staff_ids)
    await expect_error(
        harness.book(tenant, START, staff_id="", email="c@example.com"),
        grpc.StatusCode.ALREADY_EXISTS,
        "slot_taken",
    )
    assert uuid.UUID(one.appointment.appointment_id)


async def test_the_exclusion_constraint_decides_a_race_the_availability_check_cannot_see(
    harness: Harness,
) -> None:
    """Deterministic race: a competing booking is inserted but not yet committed, so the RPC's availability
    check passes; its insert then waits on the constraint and, once the competitor commits, gets slot_taken
    with nothing of its own written. Without the constraint the RPC would succeed and this test fails."""
    tenant = await harness.tenant()
    competitor = await psycopg.AsyncConnection.connect(harness.db.dsn)
    try:
        await competitor.execute(
            "INSERT INTO appointment (business_id, appointment_id, staff_id, service_id, start_time, end_time, "
            "padded, status, customer_name, customer_time_zone, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, tstzrange(%s, %s), 'booked', 'Rival', 'UTC', now(), now())",
            (
                tenant.business_id,
                uuid.uuid4(),
                tenant.staff_ids[0],
                tenant.service_id,
                START,
                START + dt.timedelta(minutes=30),
                START,
                START + dt.timedelta(minutes=40),
            ),
        )
        [[pid]] = await (await competitor.execute("SELECT pg_backend_pid()")).fetchall()
        call = asyncio.create_task(harness.book(tenant, START))
        # Wait (bounded) until the RPC's transaction is blocked behind the competitor's row.
        deadline = asyncio.get_running_loop().time() + 30
        while not harness.db.execute(
            "SELECT 1 FROM pg_locks WHERE NOT granted AND %s = ANY(pg_blocking_pids(pid))", (pid,)
        ):
            assert not call.done(), "the RPC finished without waiting on the competitor"
            assert asyncio.get_running_loop().time() < deadline, "the RPC never waited on the constraint"
            await asyncio.sleep(0.02)
        await competitor.commit()
        await expect_error(call, grpc.StatusCode.ALREADY_EXISTS, "slot_taken")
    finally:
        await competitor.close()
    assert harness.count("appointment", tenant.business_id) == 1
    assert harness.count("idempotency_key", tenant.business_id) == 0
    assert harness.topics(tenant.business_id) == []


async def test_expired_idempotency_keys_are_pruned(harness: Harness) -> None:
    tenant = await harness.tenant()
    await harness.book(tenant, START, key="old")
    harness.clock.set(harness.clock.now() + dt.timedelta(hours=2))
    await harness.book(tenant, START + dt.timedelta(hours=1), key="fresh")
    assert harness.runtime.pool is not None
    async with unit_of_work(harness.runtime.pool) as conn:
        # 24 h after the first key: it is expired, the second (2 h younger) is not.
        await repository.prune_idempotency_keys(conn, NOW + IDEMPOTENCY_TTL)
    rows = harness.db.execute("SELECT key FROM idempotency_key WHERE business_id = %s", (tenant.business_id,))
    assert rows == [("fresh",)]
