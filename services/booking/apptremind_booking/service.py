"""The booking-service's use cases: availability, booking, and the appointment lifecycle.

Each function runs inside the caller's unit of work (one transaction, which the gRPC edge opens and commits),
so an appointment change, its outbox events and its reminder rows land together or not at all.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import psycopg.errors

from apptremind_platform import validation as common
from apptremind_platform.db import Conn
from apptremind_platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from apptremind_platform.ids import new_id

from . import deposits, events, reminders, repository, tokens
from .availability import (
    MAX_RANGE,
    BookingRules,
    ServiceRule,
    Slot,
    available_slots,
    earliest_day,
    local_label,
    slots_from_day,
)
from .availability_cache import LOOKUPS, AvailabilityCache, Entry, Key
from .repository import AppointmentRow

RULES = BookingRules()
MAX_PENDING_PER_CONTACT = 5
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 50, 200
# The engine builds stretches from the local day before the query; a day either side covers any zone offset.
_MARGIN = dt.timedelta(days=2)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True, slots=True)
class CustomerInput:
    name: str
    email: str
    phone: str
    time_zone: str
    locale: str


@dataclass(frozen=True, slots=True)
class Booked:
    appointment: AppointmentRow
    self_service_token: str
    replayed: bool


@dataclass(frozen=True, slots=True)
class Page:
    items: list[AppointmentRow]
    next_page_token: str


# --- input ------------------------------------------------------------------------------------------------


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"invalid_{what}", f"{what} must be a UUID") from None


async def _business(conn: Conn, business_id: str, business_slug: str) -> tuple[uuid.UUID, int | None]:
    """The business a public request names, by id or by slug, and, for a slug, its availability
    generation (read in the same query; None for an id, whose generation is read separately)."""
    if not business_slug:
        return parse_id(business_id, "business_id"), None
    if business_id:
        raise InvalidArgument("business_id_and_slug", "give business_id or business_slug, not both")
    # Normalised as business-service normalises slugs, so the lookup matches what it would find.
    slug = business_slug.strip().lower()
    found = await repository.business_by_slug(conn, slug) if slug else None
    if found is None:
        # The answer the edge gave when it asked business-service for an unknown slug.
        raise NotFound("business_not_found", "no such business")
    return found


def _optional_id(value: str, what: str) -> uuid.UUID | None:
    return parse_id(value, what) if value else None


def _instant(value: dt.datetime | None, what: str) -> dt.datetime:
    if value is None:
        raise InvalidArgument(f"missing_{what}", f"{what} is required")
    return value.astimezone(dt.UTC)


def _customer(value: CustomerInput) -> CustomerInput:
    name = common.name(value.name, "invalid_customer_name", "customer name")
    email = value.email.strip().lower()
    phone = value.phone.strip()
    if email and not _EMAIL_RE.match(email):
        raise InvalidArgument("invalid_customer_email", "customer email is not an e-mail address")
    if phone and not _PHONE_RE.match(phone):
        raise InvalidArgument("invalid_customer_phone", "customer phone must be E.164, e.g. +4915112345678")
    if not email and not phone:
        raise InvalidArgument("missing_customer_contact", "a customer email or phone is required")
    time_zone = common.time_zone(value.time_zone)
    return CustomerInput(name, email, phone, time_zone, value.locale.strip())


# --- availability -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Catalog:
    business: repository.BusinessRow
    service: repository.ServiceRow
    rule: ServiceRule
    staff_names: dict[str, str]


async def _catalog(
    conn: Conn, business_id: uuid.UUID, service_id: uuid.UUID, *, require_active: bool = True
) -> _Catalog:
    business = await repository.get_business(conn, business_id)
    if business is None:
        raise NotFound("business_not_found", "no such business")
    found = await repository.get_service(conn, business_id, service_id)
    if found is None or (require_active and not found.active):
        raise NotFound("service_not_found", "no such service")
    # Only staff the read model knows as active can be booked.
    names = await repository.active_staff(conn, business_id, found.staff_ids)
    rule = ServiceRule(
        duration=dt.timedelta(minutes=found.duration_minutes),
        buffer_before=dt.timedelta(minutes=found.buffer_before_minutes),
        buffer_after=dt.timedelta(minutes=found.buffer_after_minutes),
        staff_ids=frozenset(names),
    )
    return _Catalog(business, found, rule, names)


async def _slots(
    conn: Conn,
    catalog: _Catalog,
    start: dt.datetime,
    end: dt.datetime,
    staff_id: uuid.UUID | None,
    now: dt.datetime,
    exclude: uuid.UUID | None = None,
    *,
    ignore_bookings: bool = False,
    first_day: dt.date | None = None,
) -> list[Slot]:
    """The engine's answer at `now`; with `first_day`, `slots_from_day`'s (before the notice and window)."""
    business_id = catalog.business.business_id
    staff = sorted(catalog.rule.staff_ids)
    busy = (
        []
        if ignore_bookings
        else await repository.busy(conn, business_id, staff, start - _MARGIN, end + _MARGIN, exclude)
    )
    schedules = await repository.schedules(conn, business_id, staff)
    overrides = await repository.overrides(conn, business_id, start - _MARGIN, end + _MARGIN)
    try:
        if first_day is not None:
            return slots_from_day(
                business_tz=catalog.business.time_zone,
                service=catalog.rule,
                staff=schedules,
                overrides=overrides,
                busy=busy,
                rules=RULES,
                range_start=start,
                range_end=end,
                first_day=first_day,
                staff_id=str(staff_id) if staff_id else None,
            )
        return available_slots(
            business_tz=catalog.business.time_zone,
            service=catalog.rule,
            staff=schedules,
            overrides=overrides,
            busy=busy,
            rules=RULES,
            range_start=start,
            range_end=end,
            now=now,
            staff_id=str(staff_id) if staff_id else None,
        )
    except ValueError as exc:
        raise InvalidArgument("invalid_range", str(exc)) from exc


async def get_availability(
    conn: Conn,
    business_id: str,
    service_id: str,
    staff_id: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    time_zone: str,
    now: dt.datetime,
    cache: AvailabilityCache | None = None,
    business_slug: str = "",
) -> list[tuple[Slot, str]]:
    """Bookable slots with their local_start label in the customer's zone; the business by id or slug.

    With a cache the answer is the same as without (see `availability_cache`): the generation is read
    before anything else, so whatever is computed afterwards is at least as new as the generation it is
    stored under.
    """
    bid, read_generation = await _business(conn, business_id, business_slug)
    sid = parse_id(service_id, "service_id")
    staff = _optional_id(staff_id, "staff_id")
    zone = common.time_zone(time_zone)
    range_start, range_end = _instant(start, "from_time"), _instant(end, "to_time")
    if range_end <= range_start or range_end - range_start > MAX_RANGE:
        raise InvalidArgument("invalid_range", "to_time must be after from_time, at most 62 days later")
    if cache is None:
        catalog = await _catalog(conn, bid, sid)
        slots = await _slots(conn, catalog, range_start, range_end, staff, now)
        return [(slot, local_label(slot, zone)) for slot in slots]

    key = Key(bid, sid, staff, range_start, range_end, zone)
    generation = read_generation if read_generation is not None else await repository.generation(conn, bid)
    entry = cache.get(key)
    if entry is not None:
        if entry.generation == generation and entry.first_day == _first_day(
            entry.business_tz, range_start, now
        ):
            LOOKUPS.labels("hit").inc()
            return entry.bookable(RULES, now)
        LOOKUPS.labels("stale").inc()
    else:
        LOOKUPS.labels("miss").inc()
    catalog = await _catalog(conn, bid, sid)
    business_tz = catalog.business.time_zone
    first_day = _first_day(business_tz, range_start, now)
    slots = await _slots(conn, catalog, range_start, range_end, staff, now, first_day=first_day)
    entry = Entry.of(generation, business_tz, first_day, [(slot, local_label(slot, zone)) for slot in slots])
    cache.put(key, entry)
    return entry.bookable(RULES, now)


def _first_day(business_tz: str, range_start: dt.datetime, now: dt.datetime) -> dt.date:
    try:
        return earliest_day(business_tz=business_tz, rules=RULES, range_start=range_start, now=now)
    except ValueError as exc:
        raise InvalidArgument("invalid_range", str(exc)) from exc


# --- booking ----------------------------------------------------------------------------------------------


async def _offered(
    conn: Conn,
    catalog: _Catalog,
    start: dt.datetime,
    staff_id: uuid.UUID | None,
    now: dt.datetime,
    exclude: uuid.UUID | None = None,
) -> Slot:
    """The slot at exactly `start`, or why not: taken by a booking, or not offered at all."""
    end = start + dt.timedelta(microseconds=1)
    offered = await _slots(conn, catalog, start, end, staff_id, now, exclude)
    if offered and offered[0].start == start:
        return offered[0]
    # Tell a customer who lost a race (someone else's booking holds the start) from one asking for a start
    # that is never offered (closed, off the grid, too soon), so a client knows whether to pick another slot.
    free = await _slots(conn, catalog, start, end, staff_id, now, exclude, ignore_bookings=True)
    if free and free[0].start == start:
        raise AlreadyExists("slot_taken", "this slot is already booked")
    raise FailedPrecondition("slot_unavailable", "this start is not offered")


def request_hash(service_id: str, staff_id: str, start: dt.datetime, customer: CustomerInput) -> str:
    """What makes two requests "the same" for an idempotency key: everything but the key."""
    canonical = json.dumps(
        [
            service_id,
            staff_id,
            start.astimezone(dt.UTC).isoformat(),
            customer.name,
            customer.email,
            customer.phone,
            customer.time_zone,
            customer.locale,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _token(secret: str, a: AppointmentRow) -> str:
    # Derived from created_at, so a replay hands back the very same token.
    return tokens.sign(secret, a.business_id, a.appointment_id, a.created_at + tokens.TOKEN_TTL)


async def book(
    conn: Conn,
    *,
    business_id: str,
    service_id: str,
    staff_id: str,
    start: dt.datetime | None,
    customer: CustomerInput,
    idempotency_key: str,
    now: dt.datetime,
    secret: str,
    hold_ttl: dt.timedelta | None = None,
    business_slug: str = "",
) -> Booked:
    """Books the slot; for a service with a deposit, holds it for `hold_ttl` instead (the paid booking saga,
    see deposits.py). Without a `hold_ttl` (no payments configured) such a service cannot be booked. The
    business is named by id or by slug."""
    bid, _ = await _business(conn, business_id, business_slug)
    sid = parse_id(service_id, "service_id")
    staff = _optional_id(staff_id, "staff_id")
    start_time = _instant(start, "start_time")
    key = idempotency_key.strip()
    if not key:
        raise InvalidArgument("idempotency_key_required", "an idempotency key is required")
    if len(key) > 200:
        raise InvalidArgument("invalid_idempotency_key", "the idempotency key is at most 200 characters")
    clean = _customer(customer)

    appointment_id = new_id()
    digest = request_hash(str(sid), str(staff or ""), start_time, clean)
    holder = await repository.claim_idempotency_key(conn, bid, key, digest, appointment_id, now)
    if holder is not None:
        held_hash, held_appointment = holder
        if held_hash != digest:
            raise FailedPrecondition(
                "idempotency_key_reused", "this idempotency key was used for a different request"
            )
        original = await repository.get_appointment(conn, bid, held_appointment)
        assert original is not None  # written in the same transaction as the key
        return Booked(original, _token(secret, original), replayed=True)

    # After the key check, so a replay answers even if the catalog changed since the original booking.
    catalog = await _catalog(conn, bid, sid)
    deposit = catalog.service.deposit_minor
    if deposit and hold_ttl is None:
        raise FailedPrecondition(
            "deposits_not_configured", "this service needs a deposit, which cannot be taken"
        )
    for contact in (clean.email, clean.phone):
        if contact:
            await repository.lock_contact(conn, bid, contact)
    if await repository.pending_count(conn, bid, clean.email, clean.phone, now) >= MAX_PENDING_PER_CONTACT:
        raise ResourceExhausted(
            "too_many_pending_bookings",
            f"at most {MAX_PENDING_PER_CONTACT} upcoming bookings per customer contact",
        )

    # The engine re-checks hours, buffers, notice and window; the exclusion constraint settles races.
    slot = await _offered(conn, catalog, start_time, staff, now)
    appointment = AppointmentRow(
        business_id=bid,
        appointment_id=appointment_id,
        staff_id=uuid.UUID(slot.staff_id),
        service_id=sid,
        start_time=slot.start,
        end_time=slot.end,
        status="held" if deposit else "booked",
        customer_name=clean.name,
        customer_email=clean.email,
        customer_phone=clean.phone,
        customer_time_zone=clean.time_zone,
        customer_locale=clean.locale,
        created_at=now,
        deposit_minor=deposit,
        deposit_currency=catalog.service.deposit_currency,
        free_cancellation_hours=catalog.service.free_cancellation_hours,
        hold_expires_at=now + hold_ttl if deposit and hold_ttl is not None else None,
    )
    try:
        await repository.insert_appointment(conn, appointment, slot.padded(catalog.rule))
    except psycopg.errors.ExclusionViolation:
        # Raising rolls the whole transaction back: the idempotency key is not spent on a failed booking.
        raise AlreadyExists("slot_taken", "this slot was just taken") from None
    if appointment.status == "booked":
        await _announce(conn, catalog, appointment, now, secret)
    return Booked(appointment, _token(secret, appointment), replayed=False)


async def _announce(conn: Conn, catalog: _Catalog, a: AppointmentRow, now: dt.datetime, secret: str) -> None:
    """What a new booking publishes: the booked event and the reminders the business's policy asks for."""
    policy = await repository.reminder_policy(conn, a.business_id)
    data = wording(catalog, a, policy, secret)
    await events.publish(conn, events.appointment_booked(a, data))
    await _request(conn, a, _plan(catalog, a, policy, now), data)


async def announce_booking(conn: Conn, a: AppointmentRow, now: dt.datetime, secret: str) -> None:
    """_announce for a hold that became a booking (its service may have been deactivated meanwhile)."""
    catalog = await _catalog(conn, a.business_id, a.service_id, require_active=False)
    await _announce(conn, catalog, a, now, secret)


def _plan(
    catalog: _Catalog, a: AppointmentRow, row: repository.PolicyRow | None, now: dt.datetime
) -> list[reminders.PlannedReminder]:
    if row is None:
        return []
    channels: list[reminders.Channel] = []
    for channel in row.channels:
        if channel == "email":
            channels.append("email")
        elif channel == "sms":
            channels.append("sms")
    policy = reminders.ReminderPolicy(
        offsets=tuple(dt.timedelta(minutes=m) for m in row.offsets_minutes),
        channels=tuple(channels),
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        time_zone=catalog.business.time_zone,
    )
    return reminders.plan_reminders(
        appointment_id=str(a.appointment_id),
        start=a.start_time,
        policy=policy,
        now=now,
        recipients=_recipients(a),
    )


def _recipients(a: AppointmentRow) -> dict[str, str]:
    return {"email": a.customer_email, "sms": a.customer_phone}


def wording(
    catalog: _Catalog, a: AppointmentRow, policy: repository.PolicyRow | None, secret: str
) -> dict[str, str]:
    """What a message about this appointment needs (documented on ReminderRequested.template_data)."""
    data = {
        "appointment_id": str(a.appointment_id),
        "service_name": catalog.service.name,
        "staff_name": catalog.staff_names.get(str(a.staff_id), ""),
        "customer_name": a.customer_name,
        "start_time": a.start_time.astimezone(dt.UTC).isoformat(),
        "end_time": a.end_time.astimezone(dt.UTC).isoformat(),
        "local_start": a.start_time.astimezone(ZoneInfo(a.customer_time_zone)).isoformat(),
        "business_time_zone": catalog.business.time_zone,
        "customer_time_zone": a.customer_time_zone,
        "locale": a.customer_locale,
        "quiet_hours_start": _hhmm(policy.quiet_start if policy else None),
        "quiet_hours_end": _hhmm(policy.quiet_end if policy else None),
        "manage_token": _token(secret, a),
        # For an SMS that cannot be sent (the plan's SMS quota is spent): notification falls back to e-mail
        # unless an e-mail reminder goes out anyway.
        "customer_email": a.customer_email,
        "reminder_channels": ",".join(policy.channels) if policy else "",
    }
    if catalog.business.name:
        data["business_name"] = catalog.business.name
    return data


def _hhmm(value: dt.time | None) -> str:
    return value.strftime("%H:%M") if value is not None else ""


async def _request(
    conn: Conn, a: AppointmentRow, plan: list[reminders.PlannedReminder], template_data: dict[str, str]
) -> None:
    recipients = _recipients(a)
    for r in plan:
        await events.publish(
            conn,
            events.reminder_requested(
                a, r.remind_at, r.channel, recipients[r.channel], template_data, r.idempotency_key
            ),
        )
    await repository.add_reminders(
        conn,
        a.business_id,
        a.appointment_id,
        [
            repository.ReminderRow(
                r.idempotency_key, r.remind_at, r.channel, int(r.offset.total_seconds() // 60)
            )
            for r in plan
        ],
    )


# --- lifecycle --------------------------------------------------------------------------------------------


async def _locked(conn: Conn, business_id: uuid.UUID, appointment_id: str) -> AppointmentRow:
    aid = parse_id(appointment_id, "appointment_id")
    found = await repository.get_appointment(conn, business_id, aid, for_update=True)
    if found is None:
        raise NotFound("appointment_not_found", "no such appointment")
    return found


def _require_booked(a: AppointmentRow, action: str) -> None:
    if a.status != "booked":
        raise FailedPrecondition("invalid_transition", f"a {a.status} appointment cannot be {action}")


async def _cancel_pending_reminders(conn: Conn, a: AppointmentRow, now: dt.datetime) -> None:
    old = await repository.reminders(conn, a.business_id, a.appointment_id)
    # Reminders already due were handed to the scheduler's clock; cancelling them changes nothing.
    for r in old:
        if r.remind_at > now:
            await events.publish(conn, events.reminder_cancelled(a, r.idempotency_key))
    await repository.remove_reminders(conn, a.business_id, a.appointment_id, [r.idempotency_key for r in old])


async def cancel(
    conn: Conn,
    business_id: uuid.UUID,
    appointment_id: str,
    reason: str,
    cancelled_by: str,
    now: dt.datetime,
) -> AppointmentRow:
    a = await _locked(conn, business_id, appointment_id)
    if a.status != "held":  # a hold may be given up before it is paid
        _require_booked(a, "cancelled")
    await repository.set_status(conn, business_id, a.appointment_id, "cancelled", now)
    updated = _replace(a, status="cancelled", hold_expires_at=None)
    await events.publish(conn, events.appointment_cancelled(updated, cancelled_by, reason.strip()[:500]))
    await _cancel_pending_reminders(conn, updated, now)
    settlement = deposits.cancellation_settlement(a, cancelled_by, now)
    if settlement is not None:
        await deposits.request_settlement(conn, updated, *settlement)
    return updated


async def reschedule(
    conn: Conn,
    business_id: uuid.UUID,
    appointment_id: str,
    start: dt.datetime | None,
    now: dt.datetime,
    secret: str,
) -> AppointmentRow:
    start_time = _instant(start, "start_time")
    a = await _locked(conn, business_id, appointment_id)
    _require_booked(a, "rescheduled")
    catalog = await _catalog(conn, business_id, a.service_id)
    # Same staff member; the appointment's own range does not block its new time.
    slot = await _offered(conn, catalog, start_time, a.staff_id, now, exclude=a.appointment_id)
    try:
        await repository.set_times(
            conn, business_id, a.appointment_id, slot.start, slot.end, slot.padded(catalog.rule), now
        )
    except psycopg.errors.ExclusionViolation:
        raise AlreadyExists("slot_taken", "this slot was just taken") from None
    updated = _replace(a, start_time=slot.start, end_time=slot.end, confirmed_at=None)
    policy = await repository.reminder_policy(conn, business_id)
    data = wording(catalog, updated, policy, secret)
    await events.publish(conn, events.appointment_rescheduled(updated, a.start_time, data))

    old_rows = await repository.reminders(conn, business_id, a.appointment_id)
    old = [
        reminders.PlannedReminder(
            r.remind_at, r.channel, dt.timedelta(minutes=r.offset_minutes), r.idempotency_key
        )
        for r in old_rows
    ]
    new = _plan(catalog, updated, policy, now)
    to_cancel, to_request = reminders.diff_plans(old, new)
    for r in to_cancel:
        if r.remind_at > now:
            await events.publish(conn, events.reminder_cancelled(updated, r.idempotency_key))
    await repository.remove_reminders(
        conn, business_id, a.appointment_id, [r.idempotency_key for r in to_cancel]
    )
    await _request(conn, updated, to_request, data)
    return updated


async def complete(
    conn: Conn, business_id: uuid.UUID, appointment_id: str, now: dt.datetime
) -> AppointmentRow:
    a = await _locked(conn, business_id, appointment_id)
    _require_booked(a, "completed")
    await repository.set_status(conn, business_id, a.appointment_id, "completed", now)
    updated = _replace(a, status="completed")
    await events.publish(conn, events.appointment_completed(updated))
    await deposits.request_settlement(conn, updated, capture=True, reason="completed")
    return updated


async def mark_no_show(
    conn: Conn, business_id: uuid.UUID, appointment_id: str, now: dt.datetime
) -> AppointmentRow:
    a = await _locked(conn, business_id, appointment_id)
    _require_booked(a, "marked as a no-show")
    await repository.set_status(conn, business_id, a.appointment_id, "no_show", now)
    updated = _replace(a, status="no_show")
    await events.publish(conn, events.appointment_no_show(updated))
    await deposits.request_settlement(conn, updated, capture=True, reason="no_show")
    return updated


async def confirm(
    conn: Conn, business_id: uuid.UUID, appointment_id: str, now: dt.datetime
) -> AppointmentRow:
    a = await _locked(conn, business_id, appointment_id)
    _require_booked(a, "confirmed")
    if a.confirmed_at is not None:
        return a  # a second "C" changes nothing
    await repository.set_confirmed(conn, business_id, a.appointment_id, now)
    return _replace(a, confirmed_at=now)


async def reminder_status(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, idempotency_key: str
) -> tuple[bool, AppointmentRow]:
    """Whether the reminder is still wanted: read under the appointment's row lock, so an in-flight cancel or
    reschedule of this appointment commits first and wins."""
    if not idempotency_key.strip():
        raise InvalidArgument("idempotency_key_required", "the reminder's idempotency key is required")
    found = await repository.get_appointment(conn, business_id, appointment_id, for_update=True)
    if found is None:
        raise NotFound("appointment_not_found", "no such appointment")
    current = found.status == "booked" and await repository.has_reminder(
        conn, business_id, appointment_id, idempotency_key
    )
    return current, found


def _replace(a: AppointmentRow, **changes: object) -> AppointmentRow:
    return dataclasses.replace(a, **changes)  # type: ignore[arg-type]


async def get(conn: Conn, business_id: uuid.UUID, appointment_id: str) -> AppointmentRow:
    aid = parse_id(appointment_id, "appointment_id")
    found = await repository.get_appointment(conn, business_id, aid)
    if found is None:
        raise NotFound("appointment_not_found", "no such appointment")
    return found


def _encode_cursor(a: AppointmentRow) -> str:
    return base64.urlsafe_b64encode(f"appt|{a.start_time.isoformat()}|{a.appointment_id}".encode()).decode()


def _decode_cursor(token: str) -> tuple[dt.datetime, uuid.UUID] | None:
    if not token:
        return None
    try:
        kind, start, last = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        if kind != "appt":
            raise ValueError(kind)
        return dt.datetime.fromisoformat(start), uuid.UUID(last)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("invalid_page_token", "page_token does not come from this list") from None


async def list_appointments(
    conn: Conn,
    business_id: uuid.UUID,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    staff_id: str,
    status: str | None,
    page_size: int,
    page_token: str,
) -> Page:
    if page_size < 0:
        raise InvalidArgument("invalid_page_size", "page_size must not be negative")
    size = min(page_size or PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)
    if start is not None and end is not None and end <= start:
        raise InvalidArgument("invalid_range", "to_time must be after from_time")
    rows = await repository.list_appointments(
        conn,
        business_id,
        start=start,
        end=end,
        staff_id=_optional_id(staff_id, "staff_id"),
        status=status,
        after=_decode_cursor(page_token),
        limit=size + 1,
    )
    items = rows[:size]
    return Page(items, _encode_cursor(items[-1]) if len(rows) > size else "")
