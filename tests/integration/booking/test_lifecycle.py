"""Cancel, reschedule, complete, no-show: who may, which transitions, and exactly which reminder events."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import grpc

from apptremind_booking import events, tokens
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.events.booking import v1 as ev
from tests.integration.booking.support import TOKEN_SECRET, Harness, Tenant, expect_error, utc

# Wednesday 2030-06-05 09:00 in Berlin: the 2 h reminder (07:00) falls in quiet hours and moves to 20:59
# the evening before.
NINE = utc(2030, 6, 5, 7)


async def booked(harness: Harness, tenant: Tenant, start: dt.datetime = NINE) -> pb.BookAppointmentResponse:
    response = await harness.book(tenant, start)
    assert response.appointment is not None
    return response


def keys_of(harness: Harness, topic: str, business_id: str) -> list[str]:
    return [e.idempotency_key for e in harness.events(topic, business_id)]


async def test_customer_cancel_emits_exactly_the_pending_reminder_cancellations(harness: Harness) -> None:
    tenant = await harness.tenant()
    response = await booked(harness, tenant)
    assert response.appointment is not None
    aid = response.appointment.appointment_id
    requested = keys_of(harness, events.REMINDER_REQUESTED, tenant.business_id)
    assert requested == [
        f"{aid}|2030-06-04T07:00:00Z|email",
        f"{aid}|2030-06-04T07:00:00Z|sms",
        f"{aid}|2030-06-04T18:59:00Z|email",
        f"{aid}|2030-06-04T18:59:00Z|sms",
    ]
    # The 24 h reminders are already due: only the two still pending are cancelled.
    harness.clock.set(utc(2030, 6, 4, 9))
    result = await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(
            business_id=tenant.business_id,
            appointment_id=aid,
            reason="sick",
            self_service_token=response.self_service_token,
        ),
        pb.CancelAppointmentResponse,
    )
    assert result.appointment is not None and result.appointment.status == pb.AppointmentStatus.CANCELLED
    assert harness.events(events.APPOINTMENT_CANCELLED, tenant.business_id) == [
        ev.AppointmentCancelled(
            business_id=tenant.business_id, appointment_id=aid, cancelled_by="customer", reason="sick"
        )
    ]
    assert keys_of(harness, events.REMINDER_CANCELLED, tenant.business_id) == requested[2:]
    assert harness.count("reminder", tenant.business_id) == 0
    # The slot is free again.
    await harness.book(tenant, NINE, email="next@example.com")


async def test_reschedule_cancels_only_removed_and_requests_only_new_reminders(harness: Harness) -> None:
    tenant = await harness.tenant()
    response = await booked(harness, tenant)
    assert response.appointment is not None
    aid = response.appointment.appointment_id
    new_start = NINE + dt.timedelta(minutes=30)  # 09:30: its 2 h reminder also moves to 20:59 the day before
    result = await harness.call(
        "RescheduleAppointment",
        pb.RescheduleAppointmentRequest(
            business_id=tenant.business_id, appointment_id=aid, start_time=new_start
        ),
        pb.RescheduleAppointmentResponse,
        tenant.owner,
    )
    assert result.appointment is not None
    assert (result.appointment.start_time, result.appointment.end_time) == (
        new_start,
        new_start + dt.timedelta(minutes=30),
    )
    [moved] = harness.events(events.APPOINTMENT_RESCHEDULED, tenant.business_id)
    assert moved == ev.AppointmentRescheduled(
        business_id=tenant.business_id,
        appointment_id=aid,
        staff_id=tenant.staff_ids[0],
        previous_start_time=NINE,
        start_time=new_start,
        end_time=new_start + dt.timedelta(minutes=30),
        customer_email="kim@example.com",
        customer_phone="+4915112345678",
        template_data=moved.template_data,
    )
    # The wording follows the appointment to its new time.
    assert moved.template_data["start_time"] == new_start.isoformat()
    assert moved.template_data["local_start"] == new_start.astimezone(ZoneInfo("Europe/London")).isoformat()
    assert keys_of(harness, events.REMINDER_CANCELLED, tenant.business_id) == [
        f"{aid}|2030-06-04T07:00:00Z|email",
        f"{aid}|2030-06-04T07:00:00Z|sms",
    ]
    assert keys_of(harness, events.REMINDER_REQUESTED, tenant.business_id)[4:] == [
        f"{aid}|2030-06-04T07:30:00Z|email",
        f"{aid}|2030-06-04T07:30:00Z|sms",
    ]
    rows = harness.db.execute(
        "SELECT idempotency_key FROM reminder WHERE business_id = %s ORDER BY 1", (tenant.business_id,)
    )
    assert [r[0] for r in rows] == sorted(
        [
            f"{aid}|2030-06-04T07:30:00Z|email",
            f"{aid}|2030-06-04T07:30:00Z|sms",
            f"{aid}|2030-06-04T18:59:00Z|email",
            f"{aid}|2030-06-04T18:59:00Z|sms",
        ]
    )


async def test_reschedule_into_a_taken_or_unavailable_slot_is_refused(harness: Harness) -> None:
    tenant = await harness.tenant()
    first = await booked(harness, tenant)
    await booked(harness, tenant, NINE + dt.timedelta(hours=1))  # 10:00-10:30, padded to 10:40
    assert first.appointment is not None
    before = harness.topics(tenant.business_id)
    for start, code, reason in (
        # Its padded range would reach into the 10:00 booking.
        (NINE + dt.timedelta(minutes=45), grpc.StatusCode.ALREADY_EXISTS, "slot_taken"),
        # 12:00 local is the break.
        (utc(2030, 6, 5, 10), grpc.StatusCode.FAILED_PRECONDITION, "slot_unavailable"),
    ):
        await expect_error(
            harness.call(
                "RescheduleAppointment",
                pb.RescheduleAppointmentRequest(
                    business_id=tenant.business_id,
                    appointment_id=first.appointment.appointment_id,
                    start_time=start,
                    self_service_token=first.self_service_token,
                ),
                pb.RescheduleAppointmentResponse,
            ),
            code,
            reason,
        )
    assert harness.topics(tenant.business_id) == before
    # Moving by 15 minutes overlaps its own old range, which does not count against it.
    await harness.call(
        "RescheduleAppointment",
        pb.RescheduleAppointmentRequest(
            business_id=tenant.business_id,
            appointment_id=first.appointment.appointment_id,
            start_time=NINE + dt.timedelta(minutes=15),
            self_service_token=first.self_service_token,
        ),
        pb.RescheduleAppointmentResponse,
    )


async def test_self_service_tokens_forged_foreign_or_expired_are_refused(harness: Harness) -> None:
    tenant = await harness.tenant()
    one = await booked(harness, tenant)
    two = await booked(harness, tenant, NINE + dt.timedelta(hours=1))
    assert one.appointment is not None and two.appointment is not None
    aid = one.appointment.appointment_id
    body, _, mac = one.self_service_token.partition(".")
    forged_mac = f"{body}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    wrong_key = tokens.sign("not-the-secret", uuid.UUID(tenant.business_id), uuid.UUID(aid), utc(2031, 1, 1))
    for token in (forged_mac, two.self_service_token, wrong_key, "garbage", "a.b"):
        await expect_error(
            harness.call(
                "CancelAppointment",
                pb.CancelAppointmentRequest(
                    business_id=tenant.business_id, appointment_id=aid, self_service_token=token
                ),
                pb.CancelAppointmentResponse,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "invalid_self_service_token",
        )
    # A genuine token, past its expiry.
    expired = tokens.sign(TOKEN_SECRET, uuid.UUID(tenant.business_id), uuid.UUID(aid), harness.clock.now())
    await expect_error(
        harness.call(
            "CancelAppointment",
            pb.CancelAppointmentRequest(
                business_id=tenant.business_id, appointment_id=aid, self_service_token=expired
            ),
            pb.CancelAppointmentResponse,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "self_service_token_expired",
    )
    harness.clock.set(harness.clock.now() + tokens.TOKEN_TTL)
    await expect_error(
        harness.call(
            "RescheduleAppointment",
            pb.RescheduleAppointmentRequest(
                business_id=tenant.business_id,
                appointment_id=aid,
                start_time=NINE,
                self_service_token=one.self_service_token,
            ),
            pb.RescheduleAppointmentResponse,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "self_service_token_expired",
    )
    # No token and no membership.
    await expect_error(
        harness.call(
            "CancelAppointment",
            pb.CancelAppointmentRequest(business_id=tenant.business_id, appointment_id=aid),
            pb.CancelAppointmentResponse,
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    assert harness.events(events.APPOINTMENT_CANCELLED, tenant.business_id) == []
    [(status,)] = harness.db.execute("SELECT status FROM appointment WHERE appointment_id = %s", (aid,))
    assert status == "booked"


async def test_invalid_transitions_are_failed_precondition(harness: Harness) -> None:
    tenant = await harness.tenant()
    cancelled = await booked(harness, tenant)
    completed = await booked(harness, tenant, NINE + dt.timedelta(hours=1))
    assert cancelled.appointment is not None and completed.appointment is not None
    c_id, d_id = cancelled.appointment.appointment_id, completed.appointment.appointment_id
    bid = tenant.business_id
    await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(business_id=bid, appointment_id=c_id),
        pb.CancelAppointmentResponse,
        tenant.owner,
    )
    done = await harness.call(
        "CompleteAppointment",
        pb.CompleteAppointmentRequest(business_id=bid, appointment_id=d_id),
        pb.CompleteAppointmentResponse,
        tenant.owner,
    )
    assert done.appointment is not None and done.appointment.status == pb.AppointmentStatus.COMPLETED
    assert harness.events(events.APPOINTMENT_COMPLETED, bid) == [
        ev.AppointmentCompleted(business_id=bid, appointment_id=d_id)
    ]
    before = harness.topics(bid)
    calls = [
        (
            "CancelAppointment",
            pb.CancelAppointmentRequest(business_id=bid, appointment_id=c_id),
            pb.CancelAppointmentResponse,
        ),
        (
            "CancelAppointment",
            pb.CancelAppointmentRequest(business_id=bid, appointment_id=d_id),
            pb.CancelAppointmentResponse,
        ),
        (
            "CompleteAppointment",
            pb.CompleteAppointmentRequest(business_id=bid, appointment_id=c_id),
            pb.CompleteAppointmentResponse,
        ),
        ("MarkNoShow", pb.MarkNoShowRequest(business_id=bid, appointment_id=d_id), pb.MarkNoShowResponse),
        (
            "RescheduleAppointment",
            pb.RescheduleAppointmentRequest(business_id=bid, appointment_id=c_id, start_time=NINE),
            pb.RescheduleAppointmentResponse,
        ),
    ]
    for method, request, response_type in calls:
        await expect_error(
            harness.call(method, request, response_type, tenant.owner),
            grpc.StatusCode.FAILED_PRECONDITION,
            "invalid_transition",
        )
    assert harness.topics(bid) == before
    # No-show from booked works and is announced.
    third = await booked(harness, tenant, NINE + dt.timedelta(hours=2))
    assert third.appointment is not None
    await harness.call(
        "MarkNoShow",
        pb.MarkNoShowRequest(business_id=bid, appointment_id=third.appointment.appointment_id),
        pb.MarkNoShowResponse,
        tenant.owner,
    )
    assert harness.events(events.APPOINTMENT_NO_SHOW, bid) == [
        ev.AppointmentNoShow(business_id=bid, appointment_id=third.appointment.appointment_id)
    ]
