"""Every BusinessService RPC's happy path over a real gRPC channel, with the events each change publishes."""

from __future__ import annotations

import grpc
import pytest
from psycopg.types.range import Range

from apptremind_gen.apptremind.business import v1 as pb
from apptremind_gen.apptremind.common.v1 import Channel, Money
from apptremind_gen.apptremind.events.business import v1 as ev
from tests.integration.business.support import Harness, Tenant, at, expect_error


@pytest.fixture
async def tenant(harness: Harness) -> Tenant:
    return await harness.signup(name="Hair by Ana", time_zone="Europe/Berlin", currency="EUR")


def wi(weekday: int, start: str, end: str) -> pb.WeeklyInterval:
    return pb.WeeklyInterval(weekday=weekday, start_time=start, end_time=end)


async def test_get_business_and_public_get_by_slug(harness: Harness, tenant: Tenant) -> None:
    response = await harness.call(
        "GetBusiness",
        pb.GetBusinessRequest(business_id=tenant.business_id),
        pb.GetBusinessResponse,
        tenant.owner,
    )
    assert response.business == pb.Business(
        business_id=tenant.business_id,
        name="Hair by Ana",
        slug=tenant.slug,
        time_zone="Europe/Berlin",
        locale="en-US",
        currency="EUR",
        owner_user_id=tenant.owner_user_id,
    )
    # No token at all: the booking page is public, and it does not learn who owns the business.
    public = await harness.call(
        "GetBusinessBySlug", pb.GetBusinessBySlugRequest(slug=tenant.slug), pb.GetBusinessBySlugResponse, None
    )
    assert public.business is not None
    assert (public.business.business_id, public.business.name, public.business.owner_user_id) == (
        tenant.business_id,
        "Hair by Ana",
        "",
    )


async def test_update_business_changes_only_given_fields_and_publishes(
    harness: Harness, tenant: Tenant
) -> None:
    response = await harness.call(
        "UpdateBusiness",
        pb.UpdateBusinessRequest(business_id=tenant.business_id, name="Ana & Co", time_zone="Europe/Lisbon"),
        pb.UpdateBusinessResponse,
        tenant.owner,
    )
    expected = pb.Business(
        business_id=tenant.business_id,
        name="Ana & Co",
        slug=tenant.slug,
        time_zone="Europe/Lisbon",
        locale="en-US",
        currency="EUR",
        owner_user_id=tenant.owner_user_id,
    )
    assert response.business == expected
    fetched = await harness.call(
        "GetBusiness",
        pb.GetBusinessRequest(business_id=tenant.business_id),
        pb.GetBusinessResponse,
        tenant.owner,
    )
    assert fetched.business == expected
    assert harness.events("business.updated.v1", tenant.business_id) == [
        ev.BusinessUpdated(business=expected)
    ]

    # An admin may change it too; a request that changes nothing publishes nothing.
    admin = harness.metadata("0190a0a0-0000-7000-8000-000000000001", {tenant.business_id: "admin"})
    await harness.call(
        "UpdateBusiness",
        pb.UpdateBusinessRequest(business_id=tenant.business_id, name="Ana & Co"),
        pb.UpdateBusinessResponse,
        admin,
    )
    assert len(harness.events("business.updated.v1", tenant.business_id)) == 1


async def test_create_and_list_staff(harness: Harness, tenant: Tenant) -> None:
    user_id = "0190a0a0-0000-7000-8000-0000000000aa"
    created = await harness.call(
        "CreateStaff",
        pb.CreateStaffRequest(
            business_id=tenant.business_id, name="  Sam Lee ", email="sam@example.com", user_id=user_id
        ),
        pb.CreateStaffResponse,
        tenant.owner,
    )
    staff = created.staff
    assert staff is not None
    assert (staff.business_id, staff.name, staff.email, staff.user_id, staff.active) == (
        tenant.business_id,
        "Sam Lee",
        "sam@example.com",
        user_id,
        True,
    )
    other = await harness.add_staff(tenant, "Kim")
    # A staff member (not a manager) may read the list.
    reader = harness.metadata(user_id, {tenant.business_id: "staff"})
    listed = await harness.call(
        "ListStaff", pb.ListStaffRequest(business_id=tenant.business_id), pb.ListStaffResponse, reader
    )
    assert [s.staff_id for s in listed.staff] == [staff.staff_id, other]
    assert listed.staff[0] == staff
    assert listed.next_page_token == ""
    assert harness.events("business.staff.changed.v1", tenant.business_id)[0] == ev.StaffChanged(staff=staff)

    # One staff record per account.
    await expect_error(
        harness.call(
            "CreateStaff",
            pb.CreateStaffRequest(business_id=tenant.business_id, name="Sam again", user_id=user_id),
            pb.CreateStaffResponse,
            tenant.owner,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "staff_user_exists",
    )


async def test_set_working_hours_replaces_the_schedule(harness: Harness, tenant: Tenant) -> None:
    staff_id = await harness.add_staff(tenant)
    first = await harness.call(
        "SetWorkingHours",
        pb.SetWorkingHoursRequest(
            business_id=tenant.business_id,
            staff_id=staff_id,
            hours=[wi(1, "09:00", "13:00"), wi(1, "14:00", "18:00"), wi(5, "20:00", "24:00")],
            breaks=[wi(1, "11:00", "11:15")],
        ),
        pb.SetWorkingHoursResponse,
        tenant.owner,
    )
    assert list(first.hours) == [wi(1, "09:00", "13:00"), wi(1, "14:00", "18:00"), wi(5, "20:00", "24:00")]

    # Given out of order; answered sorted. Replaces Monday and Friday entirely.
    hours = [wi(3, "12:00", "17:00"), wi(2, "08:30", "12:00"), wi(2, "12:00", "16:00")]
    breaks = [wi(2, "10:00", "10:30"), wi(3, "12:30", "13:00")]
    response = await harness.call(
        "SetWorkingHours",
        pb.SetWorkingHoursRequest(
            business_id=tenant.business_id, staff_id=staff_id, hours=hours, breaks=breaks
        ),
        pb.SetWorkingHoursResponse,
        tenant.owner,
    )
    sorted_hours = [wi(2, "08:30", "12:00"), wi(2, "12:00", "16:00"), wi(3, "12:00", "17:00")]
    assert list(response.hours) == sorted_hours
    assert list(response.breaks) == breaks
    fetched = await harness.call(
        "GetWorkingHours",
        pb.GetWorkingHoursRequest(business_id=tenant.business_id, staff_id=staff_id),
        pb.GetWorkingHoursResponse,
        tenant.owner,
    )
    assert (list(fetched.hours), list(fetched.breaks)) == (sorted_hours, breaks)
    # Stored as minutes after midnight.
    assert harness.db.execute(
        "SELECT kind, weekday, start_minute, end_minute FROM working_hours WHERE staff_id = %s "
        "ORDER BY kind, weekday, start_minute",
        (staff_id,),
    ) == [
        ("break", 2, 600, 630),
        ("break", 3, 750, 780),
        ("hours", 2, 510, 720),
        ("hours", 2, 720, 960),
        ("hours", 3, 720, 1020),
    ]
    # Each event carries the whole schedule.
    events = harness.events("business.schedule.changed.v1", tenant.business_id)
    assert len(events) == 2
    assert events[1] == ev.ScheduleChanged(
        business_id=tenant.business_id, staff_id=staff_id, hours=sorted_hours, breaks=breaks
    )

    # An empty schedule: the staff member does not work.
    cleared = await harness.call(
        "SetWorkingHours",
        pb.SetWorkingHoursRequest(business_id=tenant.business_id, staff_id=staff_id),
        pb.SetWorkingHoursResponse,
        tenant.owner,
    )
    assert (list(cleared.hours), list(cleared.breaks)) == ([], [])


async def test_date_overrides_for_staff_and_business_wide(harness: Harness, tenant: Tenant) -> None:
    ana, ben = await harness.add_staff(tenant, "Ana"), await harness.add_staff(tenant, "Ben")
    requests = [
        pb.AddDateOverrideRequest(
            business_id=tenant.business_id,
            staff_id=ana,
            kind=pb.DateOverrideKind.TIME_OFF,
            start_time=at(10, 0),
            end_time=at(17, 0),
            reason="vacation",
        ),
        pb.AddDateOverrideRequest(
            business_id=tenant.business_id,
            kind=pb.DateOverrideKind.HOLIDAY,
            start_time=at(20, 0),
            end_time=at(21, 0),
        ),
        pb.AddDateOverrideRequest(
            business_id=tenant.business_id,
            staff_id=ben,
            kind=pb.DateOverrideKind.EXTRA_HOURS,
            start_time=at(22, 8),
            end_time=at(22, 12),
        ),
    ]
    added = []
    for request in requests:
        response = await harness.call("AddDateOverride", request, pb.AddDateOverrideResponse, tenant.owner)
        assert response.date_override is not None
        added.append(response.date_override)
    assert [(o.staff_id, o.kind, o.start_time, o.end_time, o.reason) for o in added] == [
        (ana, pb.DateOverrideKind.TIME_OFF, at(10, 0), at(17, 0), "vacation"),
        ("", pb.DateOverrideKind.HOLIDAY, at(20, 0), at(21, 0), ""),
        (ben, pb.DateOverrideKind.EXTRA_HOURS, at(22, 8), at(22, 12), ""),
    ]
    # Stored as a half-open tstzrange.
    assert harness.db.execute(
        "SELECT period FROM date_override WHERE business_id = %s AND override_id = %s",
        (tenant.business_id, added[0].override_id),
    ) == [(Range(at(10, 0), at(17, 0), "[)"),)]

    everything = await harness.call(
        "ListDateOverrides",
        pb.ListDateOverridesRequest(business_id=tenant.business_id),
        pb.ListDateOverridesResponse,
        tenant.owner,
    )
    assert list(everything.date_overrides) == added
    only_ben = await harness.call(
        "ListDateOverrides",
        pb.ListDateOverridesRequest(business_id=tenant.business_id, staff_id=ben),
        pb.ListDateOverridesResponse,
        tenant.owner,
    )
    assert list(only_ben.date_overrides) == [added[2]]
    assert harness.events("business.date_override.added.v1", tenant.business_id) == [
        ev.DateOverrideAdded(date_override=o) for o in added
    ]


async def test_create_update_and_list_services(harness: Harness, tenant: Tenant) -> None:
    ana, ben = await harness.add_staff(tenant, "Ana"), await harness.add_staff(tenant, "Ben")
    created = await harness.call(
        "CreateService",
        pb.CreateServiceRequest(
            business_id=tenant.business_id,
            name="Colour",
            duration_minutes=90,
            price_minor=8900,
            buffer_before_minutes=10,
            buffer_after_minutes=15,
            staff_ids=[ben, ana, ben],
            deposit_minor=2000,
            free_cancellation_hours=24,
        ),
        pb.CreateServiceResponse,
        tenant.owner,
    )
    service = created.service
    assert service is not None
    assert service == pb.Service(
        service_id=service.service_id,
        business_id=tenant.business_id,
        name="Colour",
        duration_minutes=90,
        price=Money(amount_minor=8900, currency="EUR"),
        buffer_before_minutes=10,
        buffer_after_minutes=15,
        staff_ids=sorted([ana, ben]),
        active=True,
        deposit=Money(amount_minor=2000, currency="EUR"),
        free_cancellation_hours=24,
    )
    free = await harness.add_service(tenant, [], name="Consultation")

    # Only the fields that are set change; update_staff_ids replaces the list.
    updated = await harness.call(
        "UpdateService",
        pb.UpdateServiceRequest(
            business_id=tenant.business_id,
            service_id=service.service_id,
            duration_minutes=75,
            price_minor=0,
            # A free service cannot keep a deposit.
            deposit_minor=0,
            staff_ids=[ana],
            update_staff_ids=True,
        ),
        pb.UpdateServiceResponse,
        tenant.owner,
    )
    assert updated.service is not None
    assert (updated.service.name, updated.service.duration_minutes, updated.service.price) == (
        "Colour",
        75,
        Money(amount_minor=0, currency="EUR"),
    )
    assert (updated.service.buffer_before_minutes, list(updated.service.staff_ids)) == (10, [ana])
    assert (updated.service.deposit, updated.service.free_cancellation_hours) == (None, 24)
    # Staff ids left alone when update_staff_ids is false, even if the list is sent.
    deactivated = await harness.call(
        "UpdateService",
        pb.UpdateServiceRequest(
            business_id=tenant.business_id, service_id=service.service_id, active=False, staff_ids=[ben]
        ),
        pb.UpdateServiceResponse,
        tenant.owner,
    )
    assert deactivated.service is not None
    assert (deactivated.service.active, list(deactivated.service.staff_ids)) == (False, [ana])

    active_only = await harness.call(
        "ListServices",
        pb.ListServicesRequest(business_id=tenant.business_id),
        pb.ListServicesResponse,
        tenant.owner,
    )
    assert [s.service_id for s in active_only.services] == [free]
    everything = await harness.call(
        "ListServices",
        pb.ListServicesRequest(business_id=tenant.business_id, include_inactive=True),
        pb.ListServicesResponse,
        tenant.owner,
    )
    assert everything.services[0] == deactivated.service
    assert [s.service_id for s in everything.services] == [service.service_id, free]

    events = harness.events("business.service.changed.v1", tenant.business_id)
    assert [e.service for e in events] == [
        service,
        everything.services[1],
        updated.service,
        deactivated.service,
    ]


async def test_reminder_policy_update(harness: Harness, tenant: Tenant) -> None:
    policy = pb.ReminderPolicy(
        business_id=tenant.business_id,
        offsets_minutes=[60, 2880, 1440],
        channels=[Channel.SMS, Channel.EMAIL],
        quiet_hours_start="21:00",
        quiet_hours_end="08:00",
        templates={"reminder_email": "friendly", "reminder_sms": "short"},
    )
    response = await harness.call(
        "UpdateReminderPolicy",
        pb.UpdateReminderPolicyRequest(policy=policy),
        pb.UpdateReminderPolicyResponse,
        tenant.owner,
    )
    # Offsets come back earliest reminder first.
    expected = pb.ReminderPolicy(
        business_id=tenant.business_id,
        offsets_minutes=[2880, 1440, 60],
        channels=[Channel.SMS, Channel.EMAIL],
        quiet_hours_start="21:00",
        quiet_hours_end="08:00",
        templates={"reminder_email": "friendly", "reminder_sms": "short"},
    )
    assert response.policy == expected
    fetched = await harness.call(
        "GetReminderPolicy",
        pb.GetReminderPolicyRequest(business_id=tenant.business_id),
        pb.GetReminderPolicyResponse,
        tenant.owner,
    )
    assert fetched.policy == expected
    events = harness.events("business.reminder_policy.changed.v1", tenant.business_id)
    assert events[-1] == ev.ReminderPolicyChanged(policy=expected)

    # Quiet hours removed again, no offsets: no reminders at all.
    cleared = await harness.call(
        "UpdateReminderPolicy",
        pb.UpdateReminderPolicyRequest(
            policy=pb.ReminderPolicy(business_id=tenant.business_id, channels=[Channel.EMAIL])
        ),
        pb.UpdateReminderPolicyResponse,
        tenant.owner,
    )
    assert cleared.policy is not None
    assert (list(cleared.policy.offsets_minutes), cleared.policy.quiet_hours_start) == ([], "")
