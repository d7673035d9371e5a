"""GetAvailability over gRPC, fed by the real read-model consumer: DST, buffers, bad input."""

from __future__ import annotations

import uuid

import grpc

from apptremind_gen.apptremind.booking import v1 as pb
from tests.integration.booking.support import Catalog, Harness, expect_error, interval, utc


def availability(
    tenant_business: str, service_id: str, start: object, end: object, zone: str, staff_id: str = ""
) -> pb.GetAvailabilityRequest:
    return pb.GetAvailabilityRequest(
        business_id=tenant_business,
        service_id=service_id,
        staff_id=staff_id,
        from_time=start,
        to_time=end,
        time_zone=zone,
    )


async def test_spring_forward_day_skips_the_missing_hour(harness: Harness) -> None:
    # Berlin springs forward on Sunday 2030-03-31 at 02:00 -> 03:00. Hours 01:00-04:00 are 2 real hours.
    harness.clock.set(utc(2030, 3, 20, 12))
    tenant = await harness.tenant(Catalog(hours=[interval(7, "01:00", "04:00")], duration=60, buffer_after=0))
    response = await harness.call(
        "GetAvailability",
        availability(
            tenant.business_id, tenant.service_id, utc(2030, 3, 30, 23), utc(2030, 3, 31, 22), "Europe/Berlin"
        ),
        pb.GetAvailabilityResponse,
    )
    assert [s.local_start for s in response.slots] == [
        "2030-03-31T01:00:00+01:00",
        "2030-03-31T01:15:00+01:00",
        "2030-03-31T01:30:00+01:00",
        "2030-03-31T01:45:00+01:00",
        "2030-03-31T03:00:00+02:00",
    ]
    assert [s.start_time for s in response.slots][-1] == utc(2030, 3, 31, 1)
    assert {s.staff_id for s in response.slots} == {tenant.staff_ids[0]}

    # The same slots, labelled in the customer's zone (New York is still on EDT, -04:00).
    in_new_york = await harness.call(
        "GetAvailability",
        availability(
            tenant.business_id,
            tenant.service_id,
            utc(2030, 3, 30, 23),
            utc(2030, 3, 31, 22),
            "America/New_York",
        ),
        pb.GetAvailabilityResponse,
    )
    assert in_new_york.slots[0].local_start == "2030-03-30T20:00:00-04:00"
    assert [s.start_time for s in in_new_york.slots] == [s.start_time for s in response.slots]


async def test_a_booking_removes_its_padded_range(harness: Harness) -> None:
    tenant = await harness.tenant(Catalog(hours=[interval(3, "09:00", "11:00")], buffer_before=15))
    request = availability(
        tenant.business_id, tenant.service_id, utc(2030, 6, 5, 6), utc(2030, 6, 5, 10), "Europe/Berlin"
    )
    before = await harness.call("GetAvailability", request, pb.GetAvailabilityResponse)
    # 09:00 .. 10:30 local every 15 min (30-min service inside 09:00-11:00).
    assert len(before.slots) == 7
    await harness.book(tenant, utc(2030, 6, 5, 7, 30))  # 09:30-10:00 local, padded 09:15-10:10
    after = await harness.call("GetAvailability", request, pb.GetAvailabilityResponse)
    # 09:00 ends 09:30 but its own buffer_before never collides; it would overlap 09:15.. -> gone.
    assert [s.local_start[11:16] for s in after.slots] == ["10:30"]


async def test_bad_input_is_invalid_argument(harness: Harness) -> None:
    tenant = await harness.tenant()
    good = dict(
        tenant_business=tenant.business_id,
        service_id=tenant.service_id,
        start=utc(2030, 6, 5, 6),
        end=utc(2030, 6, 6, 6),
        zone="Europe/Berlin",
    )
    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        ({"tenant_business": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_business_id"),
        ({"service_id": "x"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_service_id"),
        ({"staff_id": "x"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_staff_id"),
        ({"zone": "Mars/Base"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_time_zone"),
        ({"end": utc(2030, 6, 5, 6)}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_range"),
        ({"end": utc(2030, 9, 5, 6)}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_range"),
        ({"end": None}, grpc.StatusCode.INVALID_ARGUMENT, "missing_to_time"),
        ({"service_id": str(uuid.uuid4())}, grpc.StatusCode.NOT_FOUND, "service_not_found"),
        ({"tenant_business": str(uuid.uuid4())}, grpc.StatusCode.NOT_FOUND, "business_not_found"),
    ]
    for change, code, reason in cases:
        args = {**good, **change}
        await expect_error(
            harness.call("GetAvailability", availability(**args), pb.GetAvailabilityResponse),  # type: ignore[arg-type]
            code,
            reason,
        )
