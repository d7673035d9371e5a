"""The business-service's use cases: validate, read and change through the repository, publish the change.

Each function runs inside the unit of work its caller (the gRPC servicer or the saga consumer) opened, so
the change and its outbox event commit together. Authorization happens at that edge; here a business_id is
one the caller may use, and every other id is looked up within that business only, so another tenant's ids
are simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from apptremind_platform.db import Conn
from apptremind_platform.errors import InvalidArgument, NotFound
from apptremind_platform.ids import new_id

from . import events, repository, validation
from .domain import (
    Business,
    BusinessChanges,
    BusinessDraft,
    Channel,
    DateOverride,
    DateOverrideDraft,
    IntervalText,
    OverrideKind,
    Page,
    ReminderPolicy,
    ReminderPolicyDraft,
    Schedule,
    Service,
    ServiceDraft,
    ServicePatch,
    Staff,
    StaffDraft,
)
from .seats import SeatAllowance, seat_limit_reached

# Signup business ids are derived from the user id, so a duplicate or replayed auth.user.created.v1 finds
# the business it already created instead of making a second one. Never change this value.
SIGNUP_NAMESPACE = uuid.UUID("5b0c3a52-6f0e-4c1e-9d43-2f1f6b8f9a71")
# How many suffixed slugs one query checks, and how often a signup retries after losing a slug race.
_SLUG_BATCH = 20
_SLUG_ATTEMPTS = 50

T = TypeVar("T")

DEFAULT_POLICY_OFFSETS = (1440, 120)
DEFAULT_POLICY_TEMPLATES = {"reminder_email": "default", "reminder_sms": "default"}


def signup_business_id(user_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(SIGNUP_NAMESPACE, f"signup:{user_id}")


def default_policy(business_id: uuid.UUID) -> ReminderPolicy:
    return ReminderPolicy(
        business_id=business_id,
        offsets_minutes=DEFAULT_POLICY_OFFSETS,
        channels=(Channel.EMAIL,),
        quiet_hours_start=None,
        quiet_hours_end=None,
        templates=dict(DEFAULT_POLICY_TEMPLATES),
    )


def _business_id(value: str) -> uuid.UUID:
    parsed = validation.parse_id(value)
    if parsed is None:
        raise NotFound("business_not_found", "no such business")
    return parsed


async def _require_business(conn: Conn, business_id: str, *, for_update: bool = False) -> Business:
    found = await repository.get_business(conn, _business_id(business_id), for_update=for_update)
    if found is None:
        raise NotFound("business_not_found", "no such business")
    return found


async def _require_staff(
    conn: Conn, business_id: uuid.UUID, staff_id: str, *, for_update: bool = False
) -> Staff:
    parsed = validation.parse_id(staff_id)
    found = await repository.get_staff(conn, business_id, parsed, for_update=for_update) if parsed else None
    if found is None:
        raise NotFound("staff_not_found", f"no staff member {staff_id!r} in this business")
    return found


async def _staff_ids(conn: Conn, business_id: uuid.UUID, values: Sequence[str]) -> tuple[uuid.UUID, ...]:
    """The ids, deduplicated and sorted, after checking that each is a staff member of this business."""
    parsed = {value: validation.parse_id(value) for value in values}
    known = await repository.existing_staff_ids(conn, business_id, [p for p in parsed.values() if p])
    unknown = [value for value, p in parsed.items() if p not in known]
    if unknown:
        raise NotFound("staff_not_found", f"no staff member {unknown[0]!r} in this business")
    return tuple(sorted(known))


# --- businesses -----------------------------------------------------------------------------------------


async def create_business_for_signup(conn: Conn, user_id: str, draft: BusinessDraft) -> Business | None:
    """Create the signup's business and its default reminder policy; None when it already exists.

    A slug taken by another business gets the first free suffix (`shop-2`, `shop-3`, ...), so the saga
    always completes; the owner can see the slug they got on the business.
    """
    owner = validation.parse_id(user_id)
    if owner is None:
        raise InvalidArgument("invalid_user_id", f"{user_id!r} is not a user id")
    name = validation.name(draft.name)
    base = validation.slug(draft.slug)
    time_zone = validation.time_zone(draft.time_zone)
    locale = validation.locale(draft.locale)
    currency = validation.currency(draft.currency)
    business_id = signup_business_id(owner)

    for _ in range(_SLUG_ATTEMPTS):
        if await repository.business_exists(conn, business_id):
            return None
        business = Business(
            business_id, name, await _free_slug(conn, base), time_zone, locale, currency, owner
        )
        if await repository.insert_business(conn, business):
            policy = default_policy(business_id)
            await repository.save_policy(conn, policy)
            await events.publish(conn, events.business_created(business))
            await events.publish(conn, events.reminder_policy_changed(policy))
            return business
        # The slug went to a concurrent signup (or this very business committed meanwhile): look again.
    raise RuntimeError(f"no free slug for {base!r} after {_SLUG_ATTEMPTS} attempts")


def slug_candidates(base: str, start: int, count: int) -> list[str]:
    """`base` (when start is 1) and `base-N`, each cut to fit the 63-character slug limit."""
    out = []
    for n in range(start, start + count):
        if n == 1:
            out.append(base)
            continue
        suffix = f"-{n}"
        out.append(base[: validation.SLUG_MAX - len(suffix)].rstrip("-") + suffix)
    return out


async def _free_slug(conn: Conn, base: str) -> str:
    start = 1
    while True:
        candidates = slug_candidates(base, start, _SLUG_BATCH)
        taken = await repository.taken_slugs(conn, candidates)
        for candidate in candidates:
            if candidate not in taken:
                return candidate
        start += _SLUG_BATCH


async def get_business(conn: Conn, business_id: str) -> Business:
    return await _require_business(conn, business_id)


async def get_business_by_slug(conn: Conn, slug: str) -> Business:
    found = await repository.get_business_by_slug(conn, slug.strip().lower())
    if found is None:
        raise NotFound("business_not_found", "no such business")
    return found


async def update_business(conn: Conn, business_id: str, changes: BusinessChanges) -> Business:
    # Validate before touching the row: bad input changes nothing.
    name = validation.name(changes.name) if changes.name else None
    time_zone = validation.time_zone(changes.time_zone) if changes.time_zone else None
    locale = validation.locale(changes.locale) if changes.locale else None
    currency = validation.currency(changes.currency) if changes.currency else None
    current = await _require_business(conn, business_id, for_update=True)
    updated = Business(
        business_id=current.business_id,
        name=name or current.name,
        slug=current.slug,
        time_zone=time_zone or current.time_zone,
        locale=locale or current.locale,
        currency=currency or current.currency,
        owner_user_id=current.owner_user_id,
    )
    if updated != current:
        await repository.update_business(conn, updated)
        await events.publish(conn, events.business_updated(updated))
    return updated


# --- staff ----------------------------------------------------------------------------------------------


def check_staff_draft(draft: StaffDraft) -> None:
    """Bad input is refused before billing is asked about a seat."""
    validation.name(draft.name)
    validation.email(draft.email)
    validation.user_id(draft.user_id)


async def staff_in_use(conn: Conn, business_id: str) -> int:
    """The seats the business uses now: its active staff members."""
    business = await _require_business(conn, business_id)
    return await repository.count_active_staff(conn, business.business_id)


async def create_staff(conn: Conn, business_id: str, draft: StaffDraft, seats: SeatAllowance) -> Staff:
    """Adds a staff member if the plan's seat limit (`seats`, from billing) still has room."""
    name = validation.name(draft.name)
    email = validation.email(draft.email)
    user_id = validation.user_id(draft.user_id)
    # The business row lock serialises concurrent additions, so two managers cannot both take the last seat
    # that billing's answer (given before this transaction) left free.
    business = await _require_business(conn, business_id, for_update=True)
    if not seats.admits(await repository.count_active_staff(conn, business.business_id)):
        raise seat_limit_reached(seats)
    staff = Staff(new_id(), business.business_id, name, email, user_id, active=True)
    await repository.insert_staff(conn, staff)
    await events.publish(conn, events.staff_changed(staff))
    return staff


async def list_staff(conn: Conn, business_id: str, page_size: int, page_token: str) -> Page[Staff]:
    size = validation.page_size(page_size)
    after = validation.decode_page_token("staff", page_token)
    rows = await repository.list_staff(conn, _business_id(business_id), after, size + 1)
    return _page("staff", rows, size, lambda s: s.staff_id)


def _page(kind: str, rows: list[T], size: int, key: Callable[[T], uuid.UUID]) -> Page[T]:
    """The first `size` rows, and a cursor when the query (asked for one more) found more."""
    items = tuple(rows[:size])
    token = validation.encode_page_token(kind, key(items[-1])) if len(rows) > size else ""
    return Page(items, token)


# --- working hours --------------------------------------------------------------------------------------


async def set_working_hours(
    conn: Conn,
    business_id: str,
    staff_id: str,
    hours: Sequence[IntervalText],
    breaks: Sequence[IntervalText],
) -> Schedule:
    clean_hours, clean_breaks = validation.schedule(hours, breaks)
    # The staff row lock serialises two replacements of one schedule.
    staff = await _require_staff(conn, _business_id(business_id), staff_id, for_update=True)
    await repository.replace_schedule(conn, staff.business_id, staff.staff_id, clean_hours, clean_breaks)
    schedule = Schedule(staff.business_id, staff.staff_id, clean_hours, clean_breaks)
    await events.publish(conn, events.schedule_changed(schedule))
    return schedule


async def get_working_hours(conn: Conn, business_id: str, staff_id: str) -> Schedule:
    staff = await _require_staff(conn, _business_id(business_id), staff_id)
    return await repository.get_schedule(conn, staff.business_id, staff.staff_id)


# --- date overrides -------------------------------------------------------------------------------------


async def add_date_override(conn: Conn, business_id: str, draft: DateOverrideDraft) -> DateOverride:
    if draft.kind is None:
        raise InvalidArgument("invalid_kind", "kind must be TIME_OFF, HOLIDAY or EXTRA_HOURS")
    if draft.kind is OverrideKind.HOLIDAY and draft.staff_id:
        raise InvalidArgument(
            "holiday_has_staff", "a holiday closes the whole business: leave staff_id empty"
        )
    if draft.kind is not OverrideKind.HOLIDAY and not draft.staff_id:
        raise InvalidArgument("staff_required", f"{draft.kind.value} needs the staff member it applies to")
    if draft.start_time is None or draft.end_time is None:
        raise InvalidArgument("missing_time", "start_time and end_time are required")
    if draft.end_time <= draft.start_time:
        raise InvalidArgument("inverted_interval", "end_time must be after start_time")
    reason = validation.reason_text(draft.reason)
    business = await _require_business(conn, business_id)
    staff = await _require_staff(conn, business.business_id, draft.staff_id) if draft.staff_id else None
    override = DateOverride(
        override_id=new_id(),
        business_id=business.business_id,
        staff_id=staff.staff_id if staff else None,
        kind=draft.kind,
        start_time=draft.start_time,
        end_time=draft.end_time,
        reason=reason,
    )
    await repository.insert_override(conn, override)
    await events.publish(conn, events.date_override_added(override))
    return override


async def list_date_overrides(
    conn: Conn, business_id: str, staff_id: str, page_size: int, page_token: str
) -> Page[DateOverride]:
    size = validation.page_size(page_size)
    after = validation.decode_page_token("date_override", page_token)
    business = _business_id(business_id)
    staff = (await _require_staff(conn, business, staff_id)).staff_id if staff_id else None
    rows = await repository.list_overrides(conn, business, staff, after, size + 1)
    return _page("date_override", rows, size, lambda o: o.override_id)


# --- services -------------------------------------------------------------------------------------------


async def create_service(conn: Conn, business_id: str, draft: ServiceDraft) -> Service:
    name = validation.name(draft.name)
    duration = validation.duration(draft.duration_minutes)
    price = validation.price(draft.price_minor)
    before = validation.buffer(draft.buffer_before_minutes, "before")
    after = validation.buffer(draft.buffer_after_minutes, "after")
    deposit = validation.deposit(draft.deposit_minor, price)
    free_hours = validation.free_cancellation_hours(draft.free_cancellation_hours)
    business = await _require_business(conn, business_id)
    staff_ids = await _staff_ids(conn, business.business_id, draft.staff_ids)
    service = Service(
        service_id=new_id(),
        business_id=business.business_id,
        name=name,
        duration_minutes=duration,
        price_minor=price,
        currency=business.currency,
        buffer_before_minutes=before,
        buffer_after_minutes=after,
        staff_ids=staff_ids,
        active=True,
        deposit_minor=deposit,
        free_cancellation_hours=free_hours,
    )
    await repository.insert_service(conn, service)
    await events.publish(conn, events.service_changed(service))
    return service


async def update_service(conn: Conn, business_id: str, service_id: str, patch: ServicePatch) -> Service:
    name = validation.name(patch.name) if patch.name is not None else None
    duration = validation.duration(patch.duration_minutes) if patch.duration_minutes is not None else None
    price = validation.price(patch.price_minor) if patch.price_minor is not None else None
    before = (
        validation.buffer(patch.buffer_before_minutes, "before")
        if patch.buffer_before_minutes is not None
        else None
    )
    after = (
        validation.buffer(patch.buffer_after_minutes, "after")
        if patch.buffer_after_minutes is not None
        else None
    )
    free_hours = (
        validation.free_cancellation_hours(patch.free_cancellation_hours)
        if patch.free_cancellation_hours is not None
        else None
    )
    business = await _require_business(conn, business_id)
    parsed = validation.parse_id(service_id)
    current = (
        await repository.get_service(conn, business.business_id, parsed, for_update=True) if parsed else None
    )
    if current is None:
        raise NotFound("service_not_found", f"no service {service_id!r} in this business")
    staff_ids = (
        await _staff_ids(conn, business.business_id, patch.staff_ids)
        if patch.staff_ids is not None
        else current.staff_ids
    )
    updated = Service(
        service_id=current.service_id,
        business_id=current.business_id,
        name=current.name if name is None else name,
        duration_minutes=current.duration_minutes if duration is None else duration,
        price_minor=current.price_minor if price is None else price,
        # A price set now is in the business's currency now.
        currency=current.currency if price is None else business.currency,
        buffer_before_minutes=current.buffer_before_minutes if before is None else before,
        buffer_after_minutes=current.buffer_after_minutes if after is None else after,
        staff_ids=staff_ids,
        active=current.active if patch.active is None else patch.active,
        deposit_minor=validation.deposit(
            current.deposit_minor if patch.deposit_minor is None else patch.deposit_minor,
            current.price_minor if price is None else price,
        ),
        free_cancellation_hours=current.free_cancellation_hours if free_hours is None else free_hours,
    )
    if updated != current:
        await repository.update_service(conn, updated, replace_staff=staff_ids != current.staff_ids)
        await events.publish(conn, events.service_changed(updated))
    return updated


async def list_services(
    conn: Conn, business_id: str, include_inactive: bool, page_size: int, page_token: str
) -> Page[Service]:
    size = validation.page_size(page_size)
    after = validation.decode_page_token("service", page_token)
    rows = await repository.list_services(conn, _business_id(business_id), include_inactive, after, size + 1)
    return _page("service", rows, size, lambda s: s.service_id)


# --- reminder policy ------------------------------------------------------------------------------------


async def get_reminder_policy(conn: Conn, business_id: str) -> ReminderPolicy:
    policy = await repository.get_policy(conn, _business_id(business_id))
    if policy is None:
        raise NotFound("business_not_found", "no such business")
    return policy


async def update_reminder_policy(conn: Conn, business_id: str, draft: ReminderPolicyDraft) -> ReminderPolicy:
    offsets = validation.offsets(draft.offsets_minutes)
    channels = validation.channels(draft.channels)
    quiet_start, quiet_end = validation.quiet_hours(draft.quiet_hours_start, draft.quiet_hours_end)
    templates = validation.templates(draft.templates)
    business = await _require_business(conn, business_id, for_update=True)
    policy = ReminderPolicy(business.business_id, offsets, channels, quiet_start, quiet_end, templates)
    await repository.save_policy(conn, policy)
    await events.publish(conn, events.reminder_policy_changed(policy))
    return policy
