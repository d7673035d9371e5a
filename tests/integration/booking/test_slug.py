"""The business by its public slug (`business_slug`) in GetAvailability and BookAppointment, resolved from
the booking-service's read model, so the edge needs no business-service call: known, unknown, case and
blanks, and both names at once."""

from __future__ import annotations

import dataclasses
import uuid

import grpc

from apptremind_gen.apptremind.booking import v1 as pb
from tests.integration.booking.support import Harness, Tenant, expect_error, utc


def slug_of(tenant: Tenant) -> str:
    # What support.Catalog announces in business.created.
    return f"shop-{tenant.business_id[:8]}"


def availability(tenant: Tenant, **names: str) -> pb.GetAvailabilityRequest:
    return pb.GetAvailabilityRequest(
        service_id=tenant.service_id,
        from_time=utc(2030, 6, 5, 6),
        to_time=utc(2030, 6, 6, 6),
        time_zone="Europe/Berlin",
        **names,
    )


async def test_availability_by_slug_is_the_answer_by_id(harness: Harness) -> None:
    harness.clock.set(utc(2030, 6, 1, 12))
    tenant = await harness.tenant()
    by_id = await harness.call(
        "GetAvailability", availability(tenant, business_id=tenant.business_id), pb.GetAvailabilityResponse
    )
    assert by_id.slots
    for spelling in (slug_of(tenant), f"  {slug_of(tenant).upper()} "):
        by_slug = await harness.call(
            "GetAvailability", availability(tenant, business_slug=spelling), pb.GetAvailabilityResponse
        )
        assert by_slug == by_id

    # A booking shows up in the answer by slug at once (the generation is read with the slug).
    await harness.book(tenant, by_id.slots[0].start_time)
    after = await harness.call(
        "GetAvailability", availability(tenant, business_slug=slug_of(tenant)), pb.GetAvailabilityResponse
    )
    assert after.slots[0].start_time != by_id.slots[0].start_time
    assert after == await harness.call(
        "GetAvailability", availability(tenant, business_id=tenant.business_id), pb.GetAvailabilityResponse
    )


async def test_an_unknown_slug_is_not_found(harness: Harness) -> None:
    tenant = await harness.tenant()
    for slug in ("no-such-shop", "   "):
        await expect_error(
            harness.call(
                "GetAvailability", availability(tenant, business_slug=slug), pb.GetAvailabilityResponse
            ),
            grpc.StatusCode.NOT_FOUND,
            "business_not_found",
        )


async def test_id_and_slug_together_are_refused(harness: Harness) -> None:
    tenant = await harness.tenant()
    await expect_error(
        harness.call(
            "GetAvailability",
            availability(tenant, business_id=tenant.business_id, business_slug=slug_of(tenant)),
            pb.GetAvailabilityResponse,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "business_id_and_slug",
    )


def booking_request(tenant: Tenant, key: str, **names: str) -> pb.BookAppointmentRequest:
    return pb.BookAppointmentRequest(
        service_id=tenant.service_id,
        staff_id=tenant.staff_ids[0],
        start_time=utc(2030, 6, 5, 8),
        customer=pb.Customer(name="Kim", email="kim@example.com", time_zone="Europe/London"),
        idempotency_key=key,
        **names,
    )


async def test_booking_by_slug_books_in_that_business_and_replays_by_id(harness: Harness) -> None:
    harness.clock.set(utc(2030, 6, 1, 12))
    tenant = await harness.tenant()
    key = uuid.uuid4().hex
    booked = await harness.call(
        "BookAppointment",
        booking_request(tenant, key, business_slug=slug_of(tenant).upper()),
        pb.BookAppointmentResponse,
    )
    assert booked.appointment is not None
    assert booked.appointment.business_id == tenant.business_id
    assert not booked.replayed
    assert harness.count("appointment", tenant.business_id) == 1
    # The same key under the business's id is the same request: the slug only names the business.
    replay = await harness.call(
        "BookAppointment",
        booking_request(tenant, key, business_id=tenant.business_id),
        pb.BookAppointmentResponse,
    )
    assert replay.replayed
    assert dataclasses.replace(replay, replayed=False) == booked


async def test_booking_under_an_unknown_slug_writes_nothing(harness: Harness) -> None:
    harness.clock.set(utc(2030, 6, 1, 12))
    tenant = await harness.tenant()
    await expect_error(
        harness.call(
            "BookAppointment",
            booking_request(tenant, uuid.uuid4().hex, business_slug="no-such-shop"),
            pb.BookAppointmentResponse,
        ),
        grpc.StatusCode.NOT_FOUND,
        "business_not_found",
    )
    assert harness.count("appointment", tenant.business_id) == 0
    assert harness.count("idempotency_key", tenant.business_id) == 0
