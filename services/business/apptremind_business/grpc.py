"""The business-service's gRPC servicer (apptremind.business.v1.BusinessService).

Thin on purpose: authorise the verified caller (the access token's memberships), convert the request to
domain input, run the use case in one unit of work, convert the result back. Reads need any membership in
the business, changes the owner or admin role; only GetBusinessBySlug is public. CreateStaff also asks
billing-service for a free staff seat (seats.py).
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.business import v1 as pb
from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.identity import current_caller

from . import convert, service
from .domain import (
    BusinessChanges,
    DateOverrideDraft,
    ReminderPolicyDraft,
    ServiceDraft,
    ServicePatch,
    StaffDraft,
)
from .seats import Seats, seat_limit_reached

SERVICE = "apptremind.business.v1.BusinessService"

Context = Any  # grpc.aio.ServicerContext; unused, the interceptor maps errors to statuses


def _member(business_id: str) -> None:
    current_caller.get().require_role(business_id)


def _manager(business_id: str) -> None:
    current_caller.get().require_manager(business_id)


class BusinessServiceServicer:
    def __init__(self, pool: AsyncConnectionPool, seats: Seats) -> None:
        self._pool = pool
        self._seats = seats

    async def get_business(self, request: pb.GetBusinessRequest, context: Context) -> pb.GetBusinessResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            found = await service.get_business(conn, request.business_id)
        return pb.GetBusinessResponse(business=convert.business(found))

    async def get_business_by_slug(
        self, request: pb.GetBusinessBySlugRequest, context: Context
    ) -> pb.GetBusinessBySlugResponse:
        # Public: a booking page needs no account.
        async with unit_of_work(self._pool) as conn:
            found = await service.get_business_by_slug(conn, request.slug)
        return pb.GetBusinessBySlugResponse(business=convert.business(found, public=True))

    async def update_business(
        self, request: pb.UpdateBusinessRequest, context: Context
    ) -> pb.UpdateBusinessResponse:
        _manager(request.business_id)
        changes = BusinessChanges(
            name=request.name, time_zone=request.time_zone, locale=request.locale, currency=request.currency
        )
        async with unit_of_work(self._pool) as conn:
            updated = await service.update_business(conn, request.business_id, changes)
        return pb.UpdateBusinessResponse(business=convert.business(updated))

    async def create_staff(self, request: pb.CreateStaffRequest, context: Context) -> pb.CreateStaffResponse:
        _manager(request.business_id)
        draft = StaffDraft(name=request.name, email=request.email, user_id=request.user_id)
        service.check_staff_draft(draft)
        async with unit_of_work(self._pool) as conn:
            in_use = await service.staff_in_use(conn, request.business_id)
        # Asked outside any transaction: no row lock or pooled connection waits on another service.
        seats = await self._seats.allowance(request.business_id, in_use)
        if not seats.allowed:
            raise seat_limit_reached(seats)
        async with unit_of_work(self._pool) as conn:
            staff = await service.create_staff(conn, request.business_id, draft, seats)
        return pb.CreateStaffResponse(staff=convert.staff(staff))

    async def list_staff(self, request: pb.ListStaffRequest, context: Context) -> pb.ListStaffResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            page = await service.list_staff(conn, request.business_id, request.page_size, request.page_token)
        return pb.ListStaffResponse(
            staff=[convert.staff(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def set_working_hours(
        self, request: pb.SetWorkingHoursRequest, context: Context
    ) -> pb.SetWorkingHoursResponse:
        _manager(request.business_id)
        hours = [convert.interval_text(i) for i in request.hours]
        breaks = [convert.interval_text(i) for i in request.breaks]
        async with unit_of_work(self._pool) as conn:
            schedule = await service.set_working_hours(
                conn, request.business_id, request.staff_id, hours, breaks
            )
        return pb.SetWorkingHoursResponse(
            hours=[convert.interval(i) for i in schedule.hours],
            breaks=[convert.interval(i) for i in schedule.breaks],
        )

    async def get_working_hours(
        self, request: pb.GetWorkingHoursRequest, context: Context
    ) -> pb.GetWorkingHoursResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            schedule = await service.get_working_hours(conn, request.business_id, request.staff_id)
        return pb.GetWorkingHoursResponse(
            hours=[convert.interval(i) for i in schedule.hours],
            breaks=[convert.interval(i) for i in schedule.breaks],
        )

    async def add_date_override(
        self, request: pb.AddDateOverrideRequest, context: Context
    ) -> pb.AddDateOverrideResponse:
        _manager(request.business_id)
        draft = DateOverrideDraft(
            staff_id=request.staff_id,
            kind=convert.override_kind(request.kind),
            start_time=request.start_time,
            end_time=request.end_time,
            reason=request.reason,
        )
        async with unit_of_work(self._pool) as conn:
            override = await service.add_date_override(conn, request.business_id, draft)
        return pb.AddDateOverrideResponse(date_override=convert.date_override(override))

    async def list_date_overrides(
        self, request: pb.ListDateOverridesRequest, context: Context
    ) -> pb.ListDateOverridesResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            page = await service.list_date_overrides(
                conn, request.business_id, request.staff_id, request.page_size, request.page_token
            )
        return pb.ListDateOverridesResponse(
            date_overrides=[convert.date_override(o) for o in page.items],
            next_page_token=page.next_page_token,
        )

    async def create_service(
        self, request: pb.CreateServiceRequest, context: Context
    ) -> pb.CreateServiceResponse:
        _manager(request.business_id)
        draft = ServiceDraft(
            name=request.name,
            duration_minutes=request.duration_minutes,
            price_minor=request.price_minor,
            buffer_before_minutes=request.buffer_before_minutes,
            buffer_after_minutes=request.buffer_after_minutes,
            staff_ids=list(request.staff_ids),
            deposit_minor=request.deposit_minor,
            free_cancellation_hours=request.free_cancellation_hours,
        )
        async with unit_of_work(self._pool) as conn:
            created = await service.create_service(conn, request.business_id, draft)
        return pb.CreateServiceResponse(service=convert.service(created))

    async def update_service(
        self, request: pb.UpdateServiceRequest, context: Context
    ) -> pb.UpdateServiceResponse:
        _manager(request.business_id)
        patch = ServicePatch(
            name=request.name,
            duration_minutes=request.duration_minutes,
            price_minor=request.price_minor,
            buffer_before_minutes=request.buffer_before_minutes,
            buffer_after_minutes=request.buffer_after_minutes,
            staff_ids=list(request.staff_ids) if request.update_staff_ids else None,
            active=request.active,
            deposit_minor=request.deposit_minor,
            free_cancellation_hours=request.free_cancellation_hours,
        )
        async with unit_of_work(self._pool) as conn:
            updated = await service.update_service(conn, request.business_id, request.service_id, patch)
        return pb.UpdateServiceResponse(service=convert.service(updated))

    async def list_services(
        self, request: pb.ListServicesRequest, context: Context
    ) -> pb.ListServicesResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            page = await service.list_services(
                conn, request.business_id, request.include_inactive, request.page_size, request.page_token
            )
        return pb.ListServicesResponse(
            services=[convert.service(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def get_reminder_policy(
        self, request: pb.GetReminderPolicyRequest, context: Context
    ) -> pb.GetReminderPolicyResponse:
        _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            policy = await service.get_reminder_policy(conn, request.business_id)
        return pb.GetReminderPolicyResponse(policy=convert.reminder_policy(policy))

    async def update_reminder_policy(
        self, request: pb.UpdateReminderPolicyRequest, context: Context
    ) -> pb.UpdateReminderPolicyResponse:
        policy = request.policy
        if policy is None:
            # Refuse the anonymous first, so a missing body tells an outsider nothing.
            current_caller.get().require_user()
            raise InvalidArgument("missing_policy", "policy is required")
        _manager(policy.business_id)
        draft = ReminderPolicyDraft(
            offsets_minutes=list(policy.offsets_minutes),
            channels=[convert.channel(c) for c in policy.channels],
            quiet_hours_start=policy.quiet_hours_start,
            quiet_hours_end=policy.quiet_hours_end,
            templates=dict(policy.templates),
        )
        async with unit_of_work(self._pool) as conn:
            saved = await service.update_reminder_policy(conn, policy.business_id, draft)
        return pb.UpdateReminderPolicyResponse(policy=convert.reminder_policy(saved))
