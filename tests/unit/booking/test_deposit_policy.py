"""Who keeps the deposit when an appointment is cancelled (booking decides; billing carries it out)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from apptremind_booking.deposits import cancellation_settlement
from apptremind_booking.repository import AppointmentRow

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
APPOINTMENT = AppointmentRow(
    business_id=uuid.uuid4(),
    appointment_id=uuid.uuid4(),
    staff_id=uuid.uuid4(),
    service_id=uuid.uuid4(),
    start_time=NOW + dt.timedelta(hours=48),
    end_time=NOW + dt.timedelta(hours=49),
    status="booked",
    customer_name="Ann",
    customer_email="ann@example.com",
    customer_phone="",
    customer_time_zone="Europe/Berlin",
    customer_locale="de",
    created_at=NOW - dt.timedelta(days=1),
    deposit_minor=2000,
    deposit_currency="EUR",
    free_cancellation_hours=24,
)


@pytest.mark.parametrize(
    ("hours_ahead", "status", "by", "expected"),
    [
        (48, "booked", "customer", (False, "cancelled_early")),
        (24, "booked", "customer", (False, "cancelled_early")),  # exactly at the limit: still free
        (23.9, "booked", "customer", (True, "cancelled_late")),
        (1, "booked", "business", (False, "cancelled_by_business")),
        (1, "held", "customer", (False, "cancelled_before_payment")),
    ],
)
def test_cancellation_settlement(
    hours_ahead: float, status: str, by: str, expected: tuple[bool, str]
) -> None:
    a = dataclasses.replace(APPOINTMENT, status=status, start_time=NOW + dt.timedelta(hours=hours_ahead))
    assert cancellation_settlement(a, by, NOW) == expected


def test_no_deposit_nothing_to_settle() -> None:
    assert cancellation_settlement(dataclasses.replace(APPOINTMENT, deposit_minor=0), "customer", NOW) is None


def test_zero_free_hours_always_refunds_a_customer() -> None:
    a = dataclasses.replace(APPOINTMENT, free_cancellation_hours=0, start_time=NOW + dt.timedelta(minutes=5))
    assert cancellation_settlement(a, "customer", NOW) == (False, "cancelled_early")
