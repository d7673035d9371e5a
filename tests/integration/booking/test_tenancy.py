"""Authorization and tenancy: members of A never reach B; B's ids under A are NOT_FOUND; pagination."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc

from apptremind_gen.apptremind.booking import v1 as pb
from tests.integration.booking.support import Harness, expect_error, utc

NINE = utc(2030, 6, 5, 7)


def member_calls(business_id: str, appointment_id: str) -> list[tuple[str, Any, Any]]:
    return [
        (
            "GetAppointment",
            pb.GetAppointmentRequest(business_id=business_id, appointment_id=appointment_id),
            pb.GetAppointmentResponse,
        ),
        (
            "ListAppointments",
            pb.ListAppointmentsRequest(business_id=business_id),
            pb.ListAppointmentsResponse,
        ),
        (
            "CancelAppointment",
            pb.CancelAppointmentRequest(business_id=business_id, appointment_id=appointment_id),
            pb.CancelAppointmentResponse,
        ),
        (
            "RescheduleAppointment",
            pb.RescheduleAppointmentRequest(
                business_id=business_id,
                appointment_id=appointment_id,
                start_time=NINE + dt.timedelta(hours=1),
            ),
            pb.RescheduleAppointmentResponse,
        ),
        (
            "CompleteAppointment",
            pb.CompleteAppointmentRequest(business_id=business_id, appointment_id=appointment_id),
            pb.CompleteAppointmentResponse,
        ),
        (
            "MarkNoShow",
            pb.MarkNoShowRequest(business_id=business_id, appointment_id=appointment_id),
            pb.MarkNoShowResponse,
        ),
    ]


async def test_members_of_one_business_never_reach_another(harness: Harness) -> None:
    a, b = await harness.tenant(), await harness.tenant()
    in_a = await harness.book(a, NINE)
    in_b = await harness.book(b, NINE)
    assert in_a.appointment is not None and in_b.appointment is not None
    a_id, b_id = in_a.appointment.appointment_id, in_b.appointment.appointment_id

    # A's owner addressing B's business: refused before anything is read.
    for method, request, response_type in member_calls(b.business_id, b_id):
        await expect_error(
            harness.call(method, request, response_type, a.owner),
            grpc.StatusCode.PERMISSION_DENIED,
            "not_a_member",
        )
    # A's owner addressing B's appointment under A's business: it does not exist there.
    for method, request, response_type in member_calls(a.business_id, b_id):
        if method == "ListAppointments":
            continue
        await expect_error(
            harness.call(method, request, response_type, a.owner),
            grpc.StatusCode.NOT_FOUND,
            "appointment_not_found",
        )
    # A's customer token is worthless in B, for A's or B's appointment.
    for appointment_id in (a_id, b_id):
        await expect_error(
            harness.call(
                "CancelAppointment",
                pb.CancelAppointmentRequest(
                    business_id=b.business_id,
                    appointment_id=appointment_id,
                    self_service_token=in_a.self_service_token,
                ),
                pb.CancelAppointmentResponse,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "invalid_self_service_token",
        )
    # Public calls with A's service under B's business find nothing.
    await expect_error(
        harness.call(
            "GetAvailability",
            pb.GetAvailabilityRequest(
                business_id=b.business_id,
                service_id=a.service_id,
                from_time=NINE,
                to_time=NINE + dt.timedelta(days=1),
                time_zone="UTC",
            ),
            pb.GetAvailabilityResponse,
        ),
        grpc.StatusCode.NOT_FOUND,
        "service_not_found",
    )
    await expect_error(
        harness.call(
            "BookAppointment",
            pb.BookAppointmentRequest(
                business_id=b.business_id,
                service_id=a.service_id,
                start_time=NINE + dt.timedelta(hours=1),
                customer=pb.Customer(name="X", email="x@example.com", time_zone="UTC"),
                idempotency_key="k",
            ),
            pb.BookAppointmentResponse,
        ),
        grpc.StatusCode.NOT_FOUND,
        "service_not_found",
    )
    # Nothing changed in either business.
    rows = harness.db.execute(
        "SELECT appointment_id, status, start_time FROM appointment WHERE appointment_id = ANY(%s) ORDER BY 1",
        ([uuid.UUID(a_id), uuid.UUID(b_id)],),
    )
    assert [(str(r[1]), r[2]) for r in rows] == [("booked", NINE), ("booked", NINE)]
    # B's staff role may read its own appointment.
    staff = harness.metadata(str(uuid.uuid4()), {b.business_id: "staff"})
    got = await harness.call(
        "GetAppointment",
        pb.GetAppointmentRequest(business_id=b.business_id, appointment_id=b_id),
        pb.GetAppointmentResponse,
        staff,
    )
    assert got.appointment == in_b.appointment


async def test_list_appointments_pages_with_a_cursor_and_filters(harness: Harness) -> None:
    tenant = await harness.tenant()
    starts = [NINE + dt.timedelta(days=d, hours=h) for d in range(3) for h in (0, 1)]
    ids = []
    for n, start in enumerate(starts):
        response = await harness.book(tenant, start, email=f"p{n}@example.com", phone="")
        assert response.appointment is not None
        ids.append(response.appointment.appointment_id)
    await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(business_id=tenant.business_id, appointment_id=ids[1]),
        pb.CancelAppointmentResponse,
        tenant.owner,
    )

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await harness.call(
            "ListAppointments",
            pb.ListAppointmentsRequest(business_id=tenant.business_id, page_size=4, page_token=token),
            pb.ListAppointmentsResponse,
            tenant.owner,
        )
        seen += [a.appointment_id for a in page.appointments]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == (ids, 2)

    booked_on_day_two = await harness.call(
        "ListAppointments",
        pb.ListAppointmentsRequest(
            business_id=tenant.business_id,
            from_time=NINE,
            to_time=NINE + dt.timedelta(days=1),
            status=pb.AppointmentStatus.BOOKED,
            staff_id=tenant.staff_ids[0],
        ),
        pb.ListAppointmentsResponse,
        tenant.owner,
    )
    assert [a.appointment_id for a in booked_on_day_two.appointments] == [ids[0]]
    await expect_error(
        harness.call(
            "ListAppointments",
            pb.ListAppointmentsRequest(business_id=tenant.business_id, page_token="bm9wZQ=="),
            pb.ListAppointmentsResponse,
            tenant.owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_page_token",
    )
