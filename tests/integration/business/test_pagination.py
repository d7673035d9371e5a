"""Cursor pagination: every item exactly once, in id order, with opaque tokens tied to their list."""

from __future__ import annotations

import asyncio

import grpc

from apptremind_gen.apptremind.business import v1 as pb
from tests.integration.business.support import Harness, at, expect_error


async def test_120_staff_in_pages_of_50_come_back_exactly_once(harness: Harness) -> None:
    tenant = await harness.signup()
    created = await asyncio.gather(*(harness.add_staff(tenant, f"Staff {i:03d}") for i in range(120)))
    assert len(set(created)) == 120

    pages: list[list[str]] = []
    token = ""
    while True:
        response = await harness.call(
            "ListStaff",
            pb.ListStaffRequest(business_id=tenant.business_id, page_size=50, page_token=token),
            pb.ListStaffResponse,
            tenant.owner,
        )
        pages.append([s.staff_id for s in response.staff])
        token = response.next_page_token
        if not token:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [50, 50, 20]
    seen = [staff_id for page in pages for staff_id in page]
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == set(created)
    # Ordered by staff_id (UUIDv7: creation order), the same order the database sorts uuids in.
    assert seen == sorted(seen)

    # No page size: 50. Too large a page size: clamped to 200, so all 120 and no further page.
    default = await harness.call(
        "ListStaff", pb.ListStaffRequest(business_id=tenant.business_id), pb.ListStaffResponse, tenant.owner
    )
    assert [s.staff_id for s in default.staff] == pages[0]
    assert default.next_page_token != ""
    everything = await harness.call(
        "ListStaff",
        pb.ListStaffRequest(business_id=tenant.business_id, page_size=5000),
        pb.ListStaffResponse,
        tenant.owner,
    )
    assert [s.staff_id for s in everything.staff] == seen
    assert everything.next_page_token == ""

    # A cursor belongs to its list: ListServices refuses ListStaff's.
    await expect_error(
        harness.call(
            "ListServices",
            pb.ListServicesRequest(business_id=tenant.business_id, page_token=default.next_page_token),
            pb.ListServicesResponse,
            tenant.owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_page_token",
    )


async def test_services_and_date_overrides_paginate_too(harness: Harness) -> None:
    tenant = await harness.signup()
    staff_id = await harness.add_staff(tenant)
    services = [await harness.add_service(tenant, [staff_id], name=f"Service {i}") for i in range(5)]
    overrides = []
    for day in range(1, 6):
        response = await harness.call(
            "AddDateOverride",
            pb.AddDateOverrideRequest(
                business_id=tenant.business_id,
                staff_id=staff_id,
                kind=pb.DateOverrideKind.TIME_OFF,
                start_time=at(day, 9),
                end_time=at(day, 12),
            ),
            pb.AddDateOverrideResponse,
            tenant.owner,
        )
        assert response.date_override is not None
        overrides.append(response.date_override.override_id)

    seen_services: list[str] = []
    token = ""
    for _ in range(3):
        page = await harness.call(
            "ListServices",
            pb.ListServicesRequest(business_id=tenant.business_id, page_size=2, page_token=token),
            pb.ListServicesResponse,
            tenant.owner,
        )
        seen_services += [s.service_id for s in page.services]
        token = page.next_page_token
    assert (seen_services, token) == (services, "")

    seen_overrides: list[str] = []
    token = ""
    for _ in range(3):
        listed = await harness.call(
            "ListDateOverrides",
            pb.ListDateOverridesRequest(
                business_id=tenant.business_id, staff_id=staff_id, page_size=2, page_token=token
            ),
            pb.ListDateOverridesResponse,
            tenant.owner,
        )
        seen_overrides += [o.override_id for o in listed.date_overrides]
        token = listed.next_page_token
    assert (seen_overrides, token) == (overrides, "")
