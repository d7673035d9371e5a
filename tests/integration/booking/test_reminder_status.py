"""The pre-send check (GetReminderStatus) and the customer's confirmation (ConfirmAppointment)."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from apptremind_booking import events, tokens
from apptremind_gen.apptremind.booking import v1 as pb
from tests.integration.booking.support import TOKEN_SECRET, Harness, Tenant, expect_error, utc

NINE = utc(2030, 6, 5, 7)


async def status(harness: Harness, token: str, key: str) -> pb.GetReminderStatusResponse:
    # No access token: the self-service token alone authorises the check.
    return await harness.call(
        "GetReminderStatus",
        pb.GetReminderStatusRequest(self_service_token=token, idempotency_key=key),
        pb.GetReminderStatusResponse,
    )


async def booked(harness: Harness, tenant: Tenant) -> tuple[str, str, list[str]]:
    response = await harness.book(tenant, NINE)
    assert response.appointment is not None
    keys = [e.idempotency_key for e in harness.events(events.REMINDER_REQUESTED, tenant.business_id)]
    return response.appointment.appointment_id, response.self_service_token, keys


async def test_a_planned_reminder_is_current_until_its_appointment_is_cancelled(harness: Harness) -> None:
    tenant = await harness.tenant()
    aid, token, keys = await booked(harness, tenant)
    for key in keys:
        answer = await status(harness, token, key)
        assert answer.current
        assert answer.appointment is not None and answer.appointment.appointment_id == aid
    assert not (await status(harness, token, f"{aid}|2030-06-01T00:00:00Z|email")).current

    await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(self_service_token=token, reason="ill"),
        pb.CancelAppointmentResponse,
    )
    assert [(await status(harness, token, key)).current for key in keys] == [False] * len(keys)


async def test_a_reschedule_retires_the_old_reminders_and_makes_the_new_ones_current(
    harness: Harness,
) -> None:
    tenant = await harness.tenant()
    _, token, old_keys = await booked(harness, tenant)
    await harness.call(
        "RescheduleAppointment",
        pb.RescheduleAppointmentRequest(self_service_token=token, start_time=NINE + dt.timedelta(hours=1)),
        pb.RescheduleAppointmentResponse,
    )
    all_keys = [e.idempotency_key for e in harness.events(events.REMINDER_REQUESTED, tenant.business_id)]
    new_keys = [k for k in all_keys if k not in old_keys]
    assert new_keys
    assert [(await status(harness, token, k)).current for k in old_keys] == [False] * len(old_keys)
    assert [(await status(harness, token, k)).current for k in new_keys] == [True] * len(new_keys)


async def test_the_status_check_refuses_a_forged_or_expired_token_and_an_empty_key(harness: Harness) -> None:
    tenant = await harness.tenant()
    aid, token, keys = await booked(harness, tenant)
    forged = tokens.sign(
        "another secret", uuid.UUID(tenant.business_id), uuid.UUID(aid), NINE + dt.timedelta(days=1)
    )
    await expect_error(
        status(harness, forged, keys[0]), grpc.StatusCode.PERMISSION_DENIED, "invalid_self_service_token"
    )
    expired = tokens.sign(TOKEN_SECRET, uuid.UUID(tenant.business_id), uuid.UUID(aid), harness.clock.now())
    await expect_error(
        status(harness, expired, keys[0]), grpc.StatusCode.PERMISSION_DENIED, "self_service_token_expired"
    )
    await expect_error(
        status(harness, token, " "), grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key_required"
    )


async def test_the_customer_confirms_once_and_a_reschedule_asks_again(harness: Harness) -> None:
    tenant = await harness.tenant()
    _, token, _ = await booked(harness, tenant)

    async def confirm() -> pb.Appointment:
        answer = await harness.call(
            "ConfirmAppointment",
            pb.ConfirmAppointmentRequest(self_service_token=token),
            pb.ConfirmAppointmentResponse,
        )
        assert answer.appointment is not None
        return answer.appointment

    first = await confirm()
    assert first.confirmed_at == harness.clock.now()
    harness.clock.set(harness.clock.now() + dt.timedelta(hours=1))
    assert (await confirm()).confirmed_at == first.confirmed_at  # a second "C" changes nothing

    moved = await harness.call(
        "RescheduleAppointment",
        pb.RescheduleAppointmentRequest(self_service_token=token, start_time=NINE + dt.timedelta(hours=1)),
        pb.RescheduleAppointmentResponse,
    )
    assert moved.appointment is not None and moved.appointment.confirmed_at is None

    await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(self_service_token=token),
        pb.CancelAppointmentResponse,
    )
    await expect_error(confirm(), grpc.StatusCode.FAILED_PRECONDITION, "invalid_transition")
