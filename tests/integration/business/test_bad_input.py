"""Bad input gets INVALID_ARGUMENT (or NOT_FOUND for unknown ids) with a machine-readable reason, and
nothing is written: not a row, not an outbox event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import betterproto2
import grpc
import pytest

from apptremind_gen.apptremind.business import v1 as pb
from apptremind_gen.apptremind.common.v1 import Channel
from tests.integration.business.support import Harness, Tenant, at, expect_error

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "0190a0a0-dead-7000-8000-000000000000"


@dataclass(frozen=True)
class World:
    tenant: Tenant
    staff_id: str
    service_id: str

    @property
    def bid(self) -> str:
        return self.tenant.business_id


@pytest.fixture(scope="module")
async def world(harness: Harness) -> World:
    tenant = await harness.signup()
    staff_id = await harness.add_staff(tenant)
    service_id = await harness.add_service(tenant, [staff_id])
    await harness.call(
        "SetWorkingHours",
        pb.SetWorkingHoursRequest(
            business_id=tenant.business_id, staff_id=staff_id, hours=[wi(1, "09:00", "17:00")]
        ),
        pb.SetWorkingHoursResponse,
        tenant.owner,
    )
    return World(tenant, staff_id, service_id)


def wi(weekday: int, start: str, end: str) -> pb.WeeklyInterval:
    return pb.WeeklyInterval(weekday=weekday, start_time=start, end_time=end)


def hours(w: World, hours: list[pb.WeeklyInterval], breaks: list[pb.WeeklyInterval] | None = None) -> Any:
    return pb.SetWorkingHoursRequest(business_id=w.bid, staff_id=w.staff_id, hours=hours, breaks=breaks or [])


def policy(w: World, **fields: Any) -> Any:
    values: dict[str, Any] = {"business_id": w.bid, "offsets_minutes": [1440], "channels": [Channel.EMAIL]}
    values.update(fields)
    return pb.UpdateReminderPolicyRequest(policy=pb.ReminderPolicy(**values))


def service(w: World, **fields: Any) -> Any:
    values: dict[str, Any] = {"business_id": w.bid, "name": "Cut", "duration_minutes": 30, "price_minor": 100}
    values.update(fields)
    return pb.CreateServiceRequest(**values)


def override(w: World, **fields: Any) -> Any:
    values: dict[str, Any] = {
        "business_id": w.bid,
        "staff_id": w.staff_id,
        "kind": pb.DateOverrideKind.TIME_OFF,
        "start_time": at(3, 9),
        "end_time": at(3, 17),
    }
    values.update(fields)
    return pb.AddDateOverrideRequest(**values)


Case = tuple[str, Callable[[World], betterproto2.Message], grpc.StatusCode, str]

CASES: dict[str, Case] = {
    # businesses
    "time zone Mars/Base": (
        "UpdateBusiness",
        lambda w: pb.UpdateBusinessRequest(business_id=w.bid, name="New", time_zone="Mars/Base"),
        INVALID,
        "invalid_time_zone",
    ),
    "time zone localtime": (
        "UpdateBusiness",
        lambda w: pb.UpdateBusinessRequest(business_id=w.bid, time_zone="localtime"),
        INVALID,
        "invalid_time_zone",
    ),
    "lowercase currency": (
        "UpdateBusiness",
        lambda w: pb.UpdateBusinessRequest(business_id=w.bid, currency="eur"),
        INVALID,
        "invalid_currency",
    ),
    "locale": (
        "UpdateBusiness",
        lambda w: pb.UpdateBusinessRequest(business_id=w.bid, locale="English"),
        INVALID,
        "invalid_locale",
    ),
    "blank business name": (
        "UpdateBusiness",
        lambda w: pb.UpdateBusinessRequest(business_id=w.bid, name="   "),
        INVALID,
        "invalid_name",
    ),
    "unknown slug": (
        "GetBusinessBySlug",
        lambda w: pb.GetBusinessBySlugRequest(slug="no-such-business-here"),
        NOT_FOUND,
        "business_not_found",
    ),
    # staff
    "staff without name": (
        "CreateStaff",
        lambda w: pb.CreateStaffRequest(business_id=w.bid, email="a@example.com"),
        INVALID,
        "invalid_name",
    ),
    "staff email": (
        "CreateStaff",
        lambda w: pb.CreateStaffRequest(business_id=w.bid, name="Sam", email="not-an-email"),
        INVALID,
        "invalid_email",
    ),
    "staff user id": (
        "CreateStaff",
        lambda w: pb.CreateStaffRequest(business_id=w.bid, name="Sam", user_id="user-1"),
        INVALID,
        "invalid_user_id",
    ),
    "negative page size": (
        "ListStaff",
        lambda w: pb.ListStaffRequest(business_id=w.bid, page_size=-1),
        INVALID,
        "invalid_page_size",
    ),
    "garbage page token": (
        "ListStaff",
        lambda w: pb.ListStaffRequest(business_id=w.bid, page_token="not a token"),
        INVALID,
        "invalid_page_token",
    ),
    # working hours
    "inverted hours": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(1, "17:00", "09:00")]),
        INVALID,
        "inverted_interval",
    ),
    "empty hours": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(1, "09:00", "09:00")]),
        INVALID,
        "inverted_interval",
    ),
    "overlapping hours": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(2, "09:00", "13:00"), wi(2, "12:00", "18:00")]),
        INVALID,
        "overlapping_hours",
    ),
    "contained hours": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(2, "09:00", "18:00"), wi(2, "10:00", "11:00")]),
        INVALID,
        "overlapping_hours",
    ),
    "break outside hours": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(3, "09:00", "17:00")], [wi(3, "16:30", "17:30")]),
        INVALID,
        "break_outside_hours",
    ),
    "break on a day off": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(3, "09:00", "17:00")], [wi(4, "12:00", "12:30")]),
        INVALID,
        "break_outside_hours",
    ),
    "overlapping breaks": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(3, "09:00", "17:00")], [wi(3, "12:00", "13:00"), wi(3, "12:30", "13:30")]),
        INVALID,
        "overlapping_breaks",
    ),
    "inverted break": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(3, "09:00", "17:00")], [wi(3, "13:00", "12:00")]),
        INVALID,
        "inverted_interval",
    ),
    "weekday 0": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(0, "09:00", "17:00")]),
        INVALID,
        "invalid_weekday",
    ),
    "weekday 8": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(8, "09:00", "17:00")]),
        INVALID,
        "invalid_weekday",
    ),
    "24:00 as start": (
        "SetWorkingHours",
        lambda w: hours(w, [wi(1, "24:00", "24:00")]),
        INVALID,
        "invalid_time",
    ),
    "25:00": ("SetWorkingHours", lambda w: hours(w, [wi(1, "09:00", "25:00")]), INVALID, "invalid_time"),
    "09:60": ("SetWorkingHours", lambda w: hours(w, [wi(1, "09:60", "17:00")]), INVALID, "invalid_time"),
    "9:00": ("SetWorkingHours", lambda w: hours(w, [wi(1, "9:00", "17:00")]), INVALID, "invalid_time"),
    "hours of unknown staff": (
        "SetWorkingHours",
        lambda w: pb.SetWorkingHoursRequest(
            business_id=w.bid, staff_id=UNKNOWN_ID, hours=[wi(1, "09:00", "17:00")]
        ),
        NOT_FOUND,
        "staff_not_found",
    ),
    "hours of malformed staff id": (
        "SetWorkingHours",
        lambda w: pb.SetWorkingHoursRequest(business_id=w.bid, staff_id="x'; DROP TABLE staff;--"),
        NOT_FOUND,
        "staff_not_found",
    ),
    "get hours of unknown staff": (
        "GetWorkingHours",
        lambda w: pb.GetWorkingHoursRequest(business_id=w.bid, staff_id=UNKNOWN_ID),
        NOT_FOUND,
        "staff_not_found",
    ),
    # date overrides
    "inverted override": (
        "AddDateOverride",
        lambda w: override(w, start_time=at(5, 12), end_time=at(5, 11)),
        INVALID,
        "inverted_interval",
    ),
    "empty override": (
        "AddDateOverride",
        lambda w: override(w, start_time=at(5, 12), end_time=at(5, 12)),
        INVALID,
        "inverted_interval",
    ),
    "override without end": (
        "AddDateOverride",
        lambda w: override(w, end_time=None),
        INVALID,
        "missing_time",
    ),
    "override kind unspecified": (
        "AddDateOverride",
        lambda w: override(w, kind=pb.DateOverrideKind.UNSPECIFIED),
        INVALID,
        "invalid_kind",
    ),
    "holiday with staff": (
        "AddDateOverride",
        lambda w: override(w, kind=pb.DateOverrideKind.HOLIDAY),
        INVALID,
        "holiday_has_staff",
    ),
    "time off without staff": (
        "AddDateOverride",
        lambda w: override(w, staff_id=""),
        INVALID,
        "staff_required",
    ),
    "time off of unknown staff": (
        "AddDateOverride",
        lambda w: override(w, staff_id=UNKNOWN_ID),
        NOT_FOUND,
        "staff_not_found",
    ),
    "override reason too long": (
        "AddDateOverride",
        lambda w: override(w, reason="x" * 501),
        INVALID,
        "invalid_reason",
    ),
    "list overrides of unknown staff": (
        "ListDateOverrides",
        lambda w: pb.ListDateOverridesRequest(business_id=w.bid, staff_id=UNKNOWN_ID),
        NOT_FOUND,
        "staff_not_found",
    ),
    # services
    "negative duration": (
        "CreateService",
        lambda w: service(w, duration_minutes=-30),
        INVALID,
        "invalid_duration",
    ),
    "zero duration": ("CreateService", lambda w: service(w, duration_minutes=0), INVALID, "invalid_duration"),
    "duration over a day": (
        "CreateService",
        lambda w: service(w, duration_minutes=1441),
        INVALID,
        "invalid_duration",
    ),
    "negative price": ("CreateService", lambda w: service(w, price_minor=-1), INVALID, "invalid_price"),
    "negative buffer": (
        "CreateService",
        lambda w: service(w, buffer_before_minutes=-5),
        INVALID,
        "invalid_buffer",
    ),
    "buffer too long": (
        "CreateService",
        lambda w: service(w, buffer_after_minutes=241),
        INVALID,
        "invalid_buffer",
    ),
    "negative deposit": ("CreateService", lambda w: service(w, deposit_minor=-1), INVALID, "invalid_deposit"),
    "deposit over the price": (
        "CreateService",
        lambda w: service(w, deposit_minor=101),
        INVALID,
        "invalid_deposit",
    ),
    "free cancellation too far ahead": (
        "CreateService",
        lambda w: service(w, free_cancellation_hours=721),
        INVALID,
        "invalid_free_cancellation_hours",
    ),
    "update price below the deposit": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(
            business_id=w.bid, service_id=w.service_id, price_minor=50, deposit_minor=60
        ),
        INVALID,
        "invalid_deposit",
    ),
    "service without name": ("CreateService", lambda w: service(w, name=""), INVALID, "invalid_name"),
    "service with unknown staff": (
        "CreateService",
        lambda w: service(w, staff_ids=[w.staff_id, UNKNOWN_ID]),
        NOT_FOUND,
        "staff_not_found",
    ),
    "service with malformed staff id": (
        "CreateService",
        lambda w: service(w, staff_ids=["nope"]),
        NOT_FOUND,
        "staff_not_found",
    ),
    "update unknown service": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(business_id=w.bid, service_id=UNKNOWN_ID, name="X"),
        NOT_FOUND,
        "service_not_found",
    ),
    "update to negative duration": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(business_id=w.bid, service_id=w.service_id, duration_minutes=-1),
        INVALID,
        "invalid_duration",
    ),
    "update to negative price": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(business_id=w.bid, service_id=w.service_id, price_minor=-100),
        INVALID,
        "invalid_price",
    ),
    "update to empty name": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(business_id=w.bid, service_id=w.service_id, name=""),
        INVALID,
        "invalid_name",
    ),
    "update to unknown staff": (
        "UpdateService",
        lambda w: pb.UpdateServiceRequest(
            business_id=w.bid, service_id=w.service_id, staff_ids=[UNKNOWN_ID], update_staff_ids=True
        ),
        NOT_FOUND,
        "staff_not_found",
    ),
    # reminder policy
    "offset 0": (
        "UpdateReminderPolicy",
        lambda w: policy(w, offsets_minutes=[0]),
        INVALID,
        "invalid_offsets",
    ),
    "negative offset": (
        "UpdateReminderPolicy",
        lambda w: policy(w, offsets_minutes=[-60]),
        INVALID,
        "invalid_offsets",
    ),
    "offset over 30 days": (
        "UpdateReminderPolicy",
        lambda w: policy(w, offsets_minutes=[43201]),
        INVALID,
        "invalid_offsets",
    ),
    "duplicate offsets": (
        "UpdateReminderPolicy",
        lambda w: policy(w, offsets_minutes=[120, 120]),
        INVALID,
        "invalid_offsets",
    ),
    "six offsets": (
        "UpdateReminderPolicy",
        lambda w: policy(w, offsets_minutes=[10, 20, 30, 40, 50, 60]),
        INVALID,
        "invalid_offsets",
    ),
    "no channels": ("UpdateReminderPolicy", lambda w: policy(w, channels=[]), INVALID, "invalid_channels"),
    "channel unspecified": (
        "UpdateReminderPolicy",
        lambda w: policy(w, channels=[Channel.UNSPECIFIED]),
        INVALID,
        "invalid_channels",
    ),
    "duplicate channels": (
        "UpdateReminderPolicy",
        lambda w: policy(w, channels=[Channel.SMS, Channel.SMS]),
        INVALID,
        "invalid_channels",
    ),
    "quiet hours start only": (
        "UpdateReminderPolicy",
        lambda w: policy(w, quiet_hours_start="22:00"),
        INVALID,
        "invalid_quiet_hours",
    ),
    "quiet hours 25:00": (
        "UpdateReminderPolicy",
        lambda w: policy(w, quiet_hours_start="21:00", quiet_hours_end="25:00"),
        INVALID,
        "invalid_quiet_hours",
    ),
    "quiet hours empty span": (
        "UpdateReminderPolicy",
        lambda w: policy(w, quiet_hours_start="21:00", quiet_hours_end="21:00"),
        INVALID,
        "invalid_quiet_hours",
    ),
    "empty template": (
        "UpdateReminderPolicy",
        lambda w: policy(w, templates={"reminder_email": ""}),
        INVALID,
        "invalid_templates",
    ),
    "template name": (
        "UpdateReminderPolicy",
        lambda w: policy(w, templates={"Reminder Email": "default"}),
        INVALID,
        "invalid_templates",
    ),
    "no policy": (
        "UpdateReminderPolicy",
        lambda w: pb.UpdateReminderPolicyRequest(),
        INVALID,
        "missing_policy",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_and_writes_nothing(harness: Harness, world: World, case: str) -> None:
    method, build, code, reason = CASES[case]
    response_type = getattr(pb, f"{method}Response")
    before = harness.snapshot()
    await expect_error(harness.call(method, build(world), response_type, world.tenant.owner), code, reason)
    assert harness.snapshot() == before


async def test_the_valid_twins_of_the_bad_cases_succeed(harness: Harness, world: World) -> None:
    """The refusals above are about the one bad field: the same requests, made valid, are accepted."""
    accepted: list[tuple[str, betterproto2.Message]] = [
        ("UpdateBusiness", pb.UpdateBusinessRequest(business_id=world.bid, time_zone="Asia/Kolkata")),
        ("SetWorkingHours", hours(world, [wi(3, "09:00", "17:00")], [wi(3, "16:30", "17:00")])),
        ("SetWorkingHours", hours(world, [wi(2, "09:00", "12:00"), wi(2, "12:00", "18:00")])),
        ("AddDateOverride", override(world)),
        ("CreateService", service(world, duration_minutes=1440, buffer_after_minutes=240, price_minor=0)),
        (
            "UpdateReminderPolicy",
            policy(world, offsets_minutes=[43200, 1], quiet_hours_start="00:00", quiet_hours_end="23:59"),
        ),
    ]
    for method, request in accepted:
        await harness.call(method, request, getattr(pb, f"{method}Response"), world.tenant.owner)
