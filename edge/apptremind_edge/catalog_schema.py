"""Catalog operations: the business, its staff, hours, time off, services and reminder policy
(business-service behind them; members and invitations from the auth-service)."""

from __future__ import annotations

import datetime as dt

import strawberry

from apptremind_gen.apptremind.auth import v1 as auth
from apptremind_gen.apptremind.business import v1 as business

from .context import EdgeContext
from .types import (
    CHANNEL_TO_PROTO,
    KIND_TO_PROTO,
    Channel,
    DateOverride,
    DateOverrideConnection,
    DateOverrideKind,
    Membership,
    MembershipConnection,
    PageInfo,
    ReminderPolicy,
    Service,
    ServiceConnection,
    Staff,
    StaffConnection,
    TemplateChoiceInput,
    WeeklyInterval,
    WeeklyIntervalInput,
    WorkingHours,
)

Info = strawberry.Info[EdgeContext, None]
DEFAULT_PAGE = 50


@strawberry.type
class Business:
    id: strawberry.ID
    name: str
    slug: str
    time_zone: str
    locale: str
    currency: str

    @classmethod
    def of(cls, b: business.Business | None) -> Business:
        assert b is not None
        return cls(
            id=strawberry.ID(b.business_id),
            name=b.name,
            slug=b.slug,
            time_zone=b.time_zone,
            locale=b.locale,
            currency=b.currency,
        )

    @strawberry.field
    async def staff(self, info: Info, first: int = DEFAULT_PAGE, after: str | None = None) -> StaffConnection:
        response = await info.context.call(
            "business",
            "ListStaff",
            business.ListStaffRequest(business_id=self.id, page_size=first, page_token=after or ""),
            business.ListStaffResponse,
        )
        return StaffConnection(
            nodes=[Staff.of(s) for s in response.staff], page_info=PageInfo.after(response.next_page_token)
        )

    @strawberry.field
    async def services(
        self, info: Info, first: int = DEFAULT_PAGE, after: str | None = None, include_inactive: bool = False
    ) -> ServiceConnection:
        response = await info.context.call(
            "business",
            "ListServices",
            business.ListServicesRequest(
                business_id=self.id,
                include_inactive=include_inactive,
                page_size=first,
                page_token=after or "",
            ),
            business.ListServicesResponse,
        )
        return ServiceConnection(
            nodes=[Service.of(s) for s in response.services],
            page_info=PageInfo.after(response.next_page_token),
        )

    @strawberry.field
    async def members(
        self, info: Info, first: int = DEFAULT_PAGE, after: str | None = None
    ) -> MembershipConnection:
        response = await info.context.call(
            "auth",
            "ListMembers",
            auth.ListMembersRequest(business_id=self.id, page_size=first, page_token=after or ""),
            auth.ListMembersResponse,
        )
        return MembershipConnection(
            nodes=[Membership.of(m) for m in response.memberships],
            page_info=PageInfo.after(response.next_page_token),
        )

    @strawberry.field
    async def working_hours(self, info: Info, staff_id: strawberry.ID) -> WorkingHours:
        response = await info.context.call(
            "business",
            "GetWorkingHours",
            business.GetWorkingHoursRequest(business_id=self.id, staff_id=staff_id),
            business.GetWorkingHoursResponse,
        )
        return working_hours(staff_id, response.hours, response.breaks)

    @strawberry.field
    async def date_overrides(
        self,
        info: Info,
        staff_id: strawberry.ID | None = None,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> DateOverrideConnection:
        response = await info.context.call(
            "business",
            "ListDateOverrides",
            business.ListDateOverridesRequest(
                business_id=self.id, staff_id=staff_id or "", page_size=first, page_token=after or ""
            ),
            business.ListDateOverridesResponse,
        )
        return DateOverrideConnection(
            nodes=[DateOverride.of(d) for d in response.date_overrides],
            page_info=PageInfo.after(response.next_page_token),
        )

    @strawberry.field
    async def reminder_policy(self, info: Info) -> ReminderPolicy:
        return await get_reminder_policy(info, self.id)


def working_hours(
    staff_id: str, hours: list[business.WeeklyInterval], breaks: list[business.WeeklyInterval]
) -> WorkingHours:
    return WorkingHours(
        staff_id=strawberry.ID(staff_id),
        hours=[WeeklyInterval.of(w) for w in hours],
        breaks=[WeeklyInterval.of(w) for w in breaks],
    )


async def get_reminder_policy(info: Info, business_id: str) -> ReminderPolicy:
    response = await info.context.call(
        "business",
        "GetReminderPolicy",
        business.GetReminderPolicyRequest(business_id=business_id),
        business.GetReminderPolicyResponse,
    )
    return ReminderPolicy.of(response.policy)


@strawberry.input
class UpdateBusinessInput:
    business_id: strawberry.ID
    name: str | None = None
    time_zone: str | None = None
    locale: str | None = None
    currency: str | None = None


@strawberry.input
class CreateStaffInput:
    business_id: strawberry.ID
    name: str
    email: str = ""
    user_id: strawberry.ID | None = None


@strawberry.input
class SetWorkingHoursInput:
    business_id: strawberry.ID
    staff_id: strawberry.ID
    hours: list[WeeklyIntervalInput]
    breaks: list[WeeklyIntervalInput] = strawberry.field(default_factory=list)


@strawberry.input
class AddTimeOffInput:
    business_id: strawberry.ID
    staff_id: strawberry.ID | None = None
    start_time: dt.datetime
    end_time: dt.datetime
    reason: str = ""
    kind: DateOverrideKind = DateOverrideKind.TIME_OFF


@strawberry.input
class CreateServiceInput:
    business_id: strawberry.ID
    name: str
    duration_minutes: int
    price_minor: int
    buffer_before_minutes: int = 0
    buffer_after_minutes: int = 0
    staff_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    # Paid when booking (held until paid); part of the price. 0: none.
    deposit_minor: int = 0
    # A customer cancelling at least this many hours ahead gets the deposit back.
    free_cancellation_hours: int = 0


@strawberry.input
class UpdateServiceInput:
    business_id: strawberry.ID
    service_id: strawberry.ID
    name: str | None = None
    duration_minutes: int | None = None
    price_minor: int | None = None
    buffer_before_minutes: int | None = None
    buffer_after_minutes: int | None = None
    staff_ids: list[strawberry.ID] | None = None
    active: bool | None = None
    deposit_minor: int | None = None
    free_cancellation_hours: int | None = None


@strawberry.input
class UpdateReminderPolicyInput:
    business_id: strawberry.ID
    offsets_minutes: list[int]
    channels: list[Channel]
    quiet_hours_start: str | None = None
    quiet_hours_end: str | None = None
    templates: list[TemplateChoiceInput] = strawberry.field(default_factory=list)


@strawberry.type
class CatalogQuery:
    # A business the caller is a member of.
    @strawberry.field
    async def business(self, info: Info, id: strawberry.ID) -> Business:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "GetBusiness",
            business.GetBusinessRequest(business_id=id),
            business.GetBusinessResponse,
        )
        return Business.of(response.business)

    @strawberry.field
    async def reminder_policy(self, info: Info, business_id: strawberry.ID) -> ReminderPolicy:
        await info.context.require_caller()
        return await get_reminder_policy(info, business_id)


@strawberry.type
class CatalogMutation:
    @strawberry.mutation
    async def update_business(self, info: Info, input: UpdateBusinessInput) -> Business:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "UpdateBusiness",
            business.UpdateBusinessRequest(
                business_id=input.business_id,
                name=input.name or "",
                time_zone=input.time_zone or "",
                locale=input.locale or "",
                currency=input.currency or "",
            ),
            business.UpdateBusinessResponse,
        )
        return Business.of(response.business)

    @strawberry.mutation
    async def create_staff(self, info: Info, input: CreateStaffInput) -> Staff:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "CreateStaff",
            business.CreateStaffRequest(
                business_id=input.business_id, name=input.name, email=input.email, user_id=input.user_id or ""
            ),
            business.CreateStaffResponse,
        )
        return Staff.of(response.staff)

    @strawberry.mutation
    async def set_working_hours(self, info: Info, input: SetWorkingHoursInput) -> WorkingHours:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "SetWorkingHours",
            business.SetWorkingHoursRequest(
                business_id=input.business_id,
                staff_id=input.staff_id,
                hours=[h.proto() for h in input.hours],
                breaks=[b.proto() for b in input.breaks],
            ),
            business.SetWorkingHoursResponse,
        )
        return working_hours(input.staff_id, response.hours, response.breaks)

    @strawberry.mutation
    async def add_time_off(self, info: Info, input: AddTimeOffInput) -> DateOverride:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "AddDateOverride",
            business.AddDateOverrideRequest(
                business_id=input.business_id,
                staff_id=input.staff_id or "",
                kind=KIND_TO_PROTO[input.kind],
                start_time=input.start_time,
                end_time=input.end_time,
                reason=input.reason,
            ),
            business.AddDateOverrideResponse,
        )
        return DateOverride.of(response.date_override)

    @strawberry.mutation
    async def create_service(self, info: Info, input: CreateServiceInput) -> Service:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "CreateService",
            business.CreateServiceRequest(
                business_id=input.business_id,
                name=input.name,
                duration_minutes=input.duration_minutes,
                price_minor=input.price_minor,
                buffer_before_minutes=input.buffer_before_minutes,
                buffer_after_minutes=input.buffer_after_minutes,
                staff_ids=list(input.staff_ids),
                deposit_minor=input.deposit_minor,
                free_cancellation_hours=input.free_cancellation_hours,
            ),
            business.CreateServiceResponse,
        )
        return Service.of(response.service)

    @strawberry.mutation
    async def update_service(self, info: Info, input: UpdateServiceInput) -> Service:
        await info.context.require_caller()
        response = await info.context.call(
            "business",
            "UpdateService",
            business.UpdateServiceRequest(
                business_id=input.business_id,
                service_id=input.service_id,
                name=input.name,
                duration_minutes=input.duration_minutes,
                price_minor=input.price_minor,
                buffer_before_minutes=input.buffer_before_minutes,
                buffer_after_minutes=input.buffer_after_minutes,
                staff_ids=list(input.staff_ids or []),
                update_staff_ids=input.staff_ids is not None,
                active=input.active,
                deposit_minor=input.deposit_minor,
                free_cancellation_hours=input.free_cancellation_hours,
            ),
            business.UpdateServiceResponse,
        )
        return Service.of(response.service)

    @strawberry.mutation
    async def update_reminder_policy(self, info: Info, input: UpdateReminderPolicyInput) -> ReminderPolicy:
        await info.context.require_caller()
        policy = business.ReminderPolicy(
            business_id=input.business_id,
            offsets_minutes=list(input.offsets_minutes),
            channels=[CHANNEL_TO_PROTO[c] for c in input.channels],
            quiet_hours_start=input.quiet_hours_start or "",
            quiet_hours_end=input.quiet_hours_end or "",
            templates={t.purpose: t.template for t in input.templates},
        )
        response = await info.context.call(
            "business",
            "UpdateReminderPolicy",
            business.UpdateReminderPolicyRequest(policy=policy),
            business.UpdateReminderPolicyResponse,
        )
        return ReminderPolicy.of(response.policy)
