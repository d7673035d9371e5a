"""All of the booking-service's SQL: the read model, appointments, idempotency keys and reminders.

Every query is scoped by business_id, the leading column of every key, so one tenant's ids never reach
another's rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.types.range import Range

from apptremind_platform.db import Conn

from .availability import Busy, Override, OverrideKind, StaffSchedule, WeeklyInterval


@dataclass(frozen=True, slots=True)
class BusinessRow:
    business_id: uuid.UUID
    name: str
    time_zone: str


@dataclass(frozen=True, slots=True)
class ServiceRow:
    business_id: uuid.UUID
    service_id: uuid.UUID
    name: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    active: bool
    staff_ids: tuple[uuid.UUID, ...]
    deposit_minor: int = 0
    deposit_currency: str = ""
    free_cancellation_hours: int = 0


@dataclass(frozen=True, slots=True)
class PolicyRow:
    offsets_minutes: tuple[int, ...]
    channels: tuple[str, ...]
    quiet_start: dt.time | None
    quiet_end: dt.time | None


@dataclass(frozen=True, slots=True)
class AppointmentRow:
    business_id: uuid.UUID
    appointment_id: uuid.UUID
    staff_id: uuid.UUID
    service_id: uuid.UUID
    start_time: dt.datetime
    end_time: dt.datetime
    status: str
    customer_name: str
    customer_email: str
    customer_phone: str
    customer_time_zone: str
    customer_locale: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None = None
    deposit_minor: int = 0
    deposit_currency: str = ""
    free_cancellation_hours: int = 0
    # Set while status is 'held'.
    hold_expires_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReminderRow:
    idempotency_key: str
    remind_at: dt.datetime
    channel: str
    offset_minutes: int


# --- availability generation ------------------------------------------------------------------------------


async def bump_generation(conn: Conn, business_id: uuid.UUID) -> None:
    """Marks every cached availability answer of the business stale once this transaction commits.

    Called by each write below that can change a business's slots, so none can forget it. The row lock it
    takes is held until commit: concurrent writes of one business serialise from here on, which is why
    callers do it after their own write (a lost booking race fails on the exclusion constraint first and
    never waits here).
    """
    await conn.execute(
        "INSERT INTO availability_generation (business_id, generation) VALUES (%s, 1) "
        "ON CONFLICT (business_id) DO UPDATE SET generation = availability_generation.generation + 1",
        (business_id,),
    )


async def generation(conn: Conn, business_id: uuid.UUID) -> int:
    """The business's committed availability generation; 0 before its first write."""
    cur = await conn.execute(
        "SELECT generation FROM availability_generation WHERE business_id = %s", (business_id,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def business_by_slug(conn: Conn, slug: str) -> tuple[uuid.UUID, int] | None:
    """The business with this public slug and its availability generation (0 before its first write).

    The one query not scoped by business_id: it is how a public request finds its business. Slugs are
    unique and never change at business-service, so the read model holds at most one row per slug. One
    round trip, since the cached availability path needs both.
    """
    cur = await conn.execute(
        "SELECT b.business_id, coalesce(g.generation, 0) FROM business b "
        "LEFT JOIN availability_generation g ON g.business_id = b.business_id WHERE b.slug = %s",
        (slug,),
    )
    row = await cur.fetchone()
    return (row[0], int(row[1])) if row else None


# --- read model -------------------------------------------------------------------------------------------


async def upsert_business(
    conn: Conn, business_id: uuid.UUID, name: str, slug: str, time_zone: str, currency: str
) -> None:
    await conn.execute(
        "INSERT INTO business (business_id, name, slug, time_zone, currency) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (business_id) DO UPDATE SET name = excluded.name, slug = excluded.slug, "
        "time_zone = excluded.time_zone, currency = excluded.currency, updated_at = now()",
        (business_id, name, slug, time_zone, currency),
    )
    await bump_generation(conn, business_id)


async def upsert_staff(
    conn: Conn, business_id: uuid.UUID, staff_id: uuid.UUID, name: str, active: bool
) -> None:
    await conn.execute(
        "INSERT INTO staff (business_id, staff_id, name, active) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (business_id, staff_id) DO UPDATE SET name = excluded.name, active = excluded.active",
        (business_id, staff_id, name, active),
    )
    await bump_generation(conn, business_id)


async def replace_schedule(
    conn: Conn,
    business_id: uuid.UUID,
    staff_id: uuid.UUID,
    hours: Sequence[tuple[int, int, int]],
    breaks: Sequence[tuple[int, int, int]],
) -> None:
    """The event carries the whole weekly schedule, so it replaces the staff member's rows."""
    await conn.execute(
        "DELETE FROM weekly_interval WHERE business_id = %s AND staff_id = %s", (business_id, staff_id)
    )
    rows = [(business_id, staff_id, "hours", *i) for i in hours] + [
        (business_id, staff_id, "break", *i) for i in breaks
    ]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO weekly_interval (business_id, staff_id, kind, weekday, start_minute, end_minute) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
    await bump_generation(conn, business_id)


async def upsert_date_override(
    conn: Conn,
    business_id: uuid.UUID,
    override_id: uuid.UUID,
    staff_id: uuid.UUID | None,
    kind: str,
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    await conn.execute(
        "INSERT INTO date_override (business_id, override_id, staff_id, kind, during) "
        "VALUES (%s, %s, %s, %s, tstzrange(%s, %s)) ON CONFLICT (business_id, override_id) DO UPDATE SET "
        "staff_id = excluded.staff_id, kind = excluded.kind, during = excluded.during",
        (business_id, override_id, staff_id, kind, start, end),
    )
    await bump_generation(conn, business_id)


async def upsert_service(conn: Conn, s: ServiceRow) -> None:
    await conn.execute(
        "INSERT INTO service (business_id, service_id, name, duration_minutes, buffer_before_minutes, "
        "buffer_after_minutes, active, deposit_minor, deposit_currency, free_cancellation_hours) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (business_id, service_id) DO UPDATE SET name = excluded.name, "
        "duration_minutes = excluded.duration_minutes, buffer_before_minutes = excluded.buffer_before_minutes, "
        "buffer_after_minutes = excluded.buffer_after_minutes, active = excluded.active, "
        "deposit_minor = excluded.deposit_minor, deposit_currency = excluded.deposit_currency, "
        "free_cancellation_hours = excluded.free_cancellation_hours",
        (
            s.business_id,
            s.service_id,
            s.name,
            s.duration_minutes,
            s.buffer_before_minutes,
            s.buffer_after_minutes,
            s.active,
            s.deposit_minor,
            s.deposit_currency,
            s.free_cancellation_hours,
        ),
    )
    await conn.execute(
        "DELETE FROM service_staff WHERE business_id = %s AND service_id = %s", (s.business_id, s.service_id)
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO service_staff (business_id, service_id, staff_id) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(s.business_id, s.service_id, staff_id) for staff_id in s.staff_ids],
        )
    await bump_generation(conn, s.business_id)


async def upsert_reminder_policy(
    conn: Conn,
    business_id: uuid.UUID,
    offsets_minutes: list[int],
    channels: list[str],
    quiet_start: dt.time | None,
    quiet_end: dt.time | None,
) -> None:
    await conn.execute(
        "INSERT INTO reminder_policy (business_id, offsets_minutes, channels, quiet_start, quiet_end) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (business_id) DO UPDATE SET "
        "offsets_minutes = excluded.offsets_minutes, channels = excluded.channels, "
        "quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end",
        (business_id, offsets_minutes, channels, quiet_start, quiet_end),
    )
    await bump_generation(conn, business_id)


async def get_business(conn: Conn, business_id: uuid.UUID) -> BusinessRow | None:
    cur = await conn.execute(
        "SELECT business_id, name, time_zone FROM business WHERE business_id = %s", (business_id,)
    )
    row = await cur.fetchone()
    return BusinessRow(*row) if row else None


async def get_service(conn: Conn, business_id: uuid.UUID, service_id: uuid.UUID) -> ServiceRow | None:
    cur = await conn.execute(
        "SELECT s.business_id, s.service_id, s.name, s.duration_minutes, s.buffer_before_minutes, "
        "s.buffer_after_minutes, s.active, s.deposit_minor, s.deposit_currency, s.free_cancellation_hours, "
        "coalesce(array_agg(ss.staff_id ORDER BY ss.staff_id) FILTER (WHERE ss.staff_id IS NOT NULL), '{}') "
        "FROM service s LEFT JOIN service_staff ss "
        "ON ss.business_id = s.business_id AND ss.service_id = s.service_id "
        "WHERE s.business_id = %s AND s.service_id = %s GROUP BY s.business_id, s.service_id",
        (business_id, service_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    business, service_id, name, duration, before, after, active, deposit, currency, free_hours, staff = row
    return ServiceRow(
        business,
        service_id,
        name,
        duration,
        before,
        after,
        active,
        tuple(staff),
        deposit,
        currency,
        free_hours,
    )


async def active_staff(conn: Conn, business_id: uuid.UUID, staff_ids: Sequence[uuid.UUID]) -> dict[str, str]:
    """Name by staff id of those staff_ids the read model knows as active."""
    cur = await conn.execute(
        "SELECT staff_id, name FROM staff WHERE business_id = %s AND staff_id = ANY(%s) AND active",
        (business_id, list(staff_ids)),
    )
    return {str(staff_id): str(name) for staff_id, name in await cur.fetchall()}


async def schedules(conn: Conn, business_id: uuid.UUID, staff_ids: Sequence[str]) -> list[StaffSchedule]:
    cur = await conn.execute(
        "SELECT staff_id, kind, weekday, start_minute, end_minute FROM weekly_interval "
        "WHERE business_id = %s AND staff_id = ANY(%s::uuid[]) ORDER BY staff_id, kind, weekday, start_minute",
        (business_id, list(staff_ids)),
    )
    hours: dict[str, list[WeeklyInterval]] = {}
    breaks: dict[str, list[WeeklyInterval]] = {}
    for staff_id, kind, weekday, start, end in await cur.fetchall():
        target = hours if kind == "hours" else breaks
        target.setdefault(str(staff_id), []).append(WeeklyInterval(weekday, start, end))
    return [
        StaffSchedule(staff_id, tuple(hours.get(staff_id, ())), tuple(breaks.get(staff_id, ())))
        for staff_id in sorted(set(hours) | set(breaks))
    ]


async def overrides(
    conn: Conn, business_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> list[Override]:
    cur = await conn.execute(
        "SELECT staff_id, kind, lower(during), upper(during) FROM date_override "
        "WHERE business_id = %s AND during && tstzrange(%s, %s)",
        (business_id, start, end),
    )
    result = []
    for staff_id, kind, lower, upper in await cur.fetchall():
        override_kind: OverrideKind = kind
        result.append(Override(str(staff_id) if staff_id else None, override_kind, lower, upper))
    return result


async def busy(
    conn: Conn,
    business_id: uuid.UUID,
    staff_ids: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
    exclude: uuid.UUID | None = None,
) -> list[Busy]:
    """Padded ranges of booked or held appointments overlapping [start, end), optionally without one
    appointment."""
    cur = await conn.execute(
        "SELECT staff_id, lower(padded), upper(padded) FROM appointment "
        "WHERE business_id = %s AND status IN ('booked', 'held') AND staff_id = ANY(%s::uuid[]) "
        "AND padded && tstzrange(%s, %s) AND appointment_id IS DISTINCT FROM %s",
        (business_id, list(staff_ids), start, end, exclude),
    )
    return [Busy(str(staff_id), lower, upper) for staff_id, lower, upper in await cur.fetchall()]


async def reminder_policy(conn: Conn, business_id: uuid.UUID) -> PolicyRow | None:
    cur = await conn.execute(
        "SELECT offsets_minutes, channels, quiet_start, quiet_end FROM reminder_policy WHERE business_id = %s",
        (business_id,),
    )
    row = await cur.fetchone()
    return PolicyRow(tuple(row[0]), tuple(row[1]), row[2], row[3]) if row else None


# --- appointments -----------------------------------------------------------------------------------------

_APPOINTMENT_COLUMNS = (
    "business_id, appointment_id, staff_id, service_id, start_time, end_time, status, customer_name, "
    "customer_email, customer_phone, customer_time_zone, customer_locale, created_at, confirmed_at, "
    "deposit_minor, deposit_currency, free_cancellation_hours, hold_expires_at"
)
_INSERT_COLUMNS = _APPOINTMENT_COLUMNS.replace(" confirmed_at,", "")


async def insert_appointment(conn: Conn, a: AppointmentRow, padded: tuple[dt.datetime, dt.datetime]) -> None:
    """Raises psycopg.errors.ExclusionViolation when the staff member is already booked for that range."""
    await conn.execute(
        f"INSERT INTO appointment ({_INSERT_COLUMNS}, padded, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            a.business_id,
            a.appointment_id,
            a.staff_id,
            a.service_id,
            a.start_time,
            a.end_time,
            a.status,
            a.customer_name,
            a.customer_email,
            a.customer_phone,
            a.customer_time_zone,
            a.customer_locale,
            a.created_at,
            a.deposit_minor,
            a.deposit_currency,
            a.free_cancellation_hours,
            a.hold_expires_at,
            Range(padded[0], padded[1], "[)"),
            a.created_at,
        ),
    )
    await bump_generation(conn, a.business_id)


async def get_appointment(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, *, for_update: bool = False
) -> AppointmentRow | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {_APPOINTMENT_COLUMNS} FROM appointment WHERE business_id = %s AND appointment_id = %s{lock}",
        (business_id, appointment_id),
    )
    row = await cur.fetchone()
    return AppointmentRow(*row) if row else None


async def set_status(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, status: str, now: dt.datetime
) -> None:
    await conn.execute(
        # Any change of status ends a hold.
        "UPDATE appointment SET status = %s, updated_at = %s, hold_expires_at = NULL "
        "WHERE business_id = %s AND appointment_id = %s",
        (status, now, business_id, appointment_id),
    )
    await bump_generation(conn, business_id)


async def set_confirmed(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, now: dt.datetime
) -> None:
    await conn.execute(
        "UPDATE appointment SET confirmed_at = %s, updated_at = %s WHERE business_id = %s AND appointment_id = %s",
        (now, now, business_id, appointment_id),
    )


async def set_times(
    conn: Conn,
    business_id: uuid.UUID,
    appointment_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
    padded: tuple[dt.datetime, dt.datetime],
    now: dt.datetime,
) -> None:
    """Raises psycopg.errors.ExclusionViolation when the new range collides with another booking."""
    await conn.execute(
        # A moved appointment needs confirming again.
        "UPDATE appointment SET start_time = %s, end_time = %s, padded = %s, updated_at = %s, confirmed_at = NULL "
        "WHERE business_id = %s AND appointment_id = %s",
        (start, end, Range(padded[0], padded[1], "[)"), now, business_id, appointment_id),
    )
    await bump_generation(conn, business_id)


async def lapsed_holds(conn: Conn, now: dt.datetime, limit: int) -> list[AppointmentRow]:
    """Held appointments whose hold has lapsed, locked; rows another sweeper holds are skipped."""
    cur = await conn.execute(
        f"SELECT {_APPOINTMENT_COLUMNS} FROM appointment WHERE status = 'held' AND hold_expires_at <= %s "
        "ORDER BY hold_expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    return [AppointmentRow(*row) for row in await cur.fetchall()]


async def lock_contact(conn: Conn, business_id: uuid.UUID, contact: str) -> None:
    """Serialises bookings of one customer contact in one business, so the pending cap cannot be raced."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"{business_id}|contact|{contact}",)
    )


async def pending_count(conn: Conn, business_id: uuid.UUID, email: str, phone: str, now: dt.datetime) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM appointment WHERE business_id = %s AND status IN ('booked', 'held') "
        "AND start_time > %s "
        "AND ((%s <> '' AND customer_email = %s) OR (%s <> '' AND customer_phone = %s))",
        (business_id, now, email, email, phone, phone),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def list_appointments(
    conn: Conn,
    business_id: uuid.UUID,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    staff_id: uuid.UUID | None,
    status: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[AppointmentRow]:
    """Ordered by (start_time, appointment_id), the keyset the cursor continues from."""
    cur = await conn.execute(
        f"SELECT {_APPOINTMENT_COLUMNS} FROM appointment WHERE business_id = %s "
        "AND (%s::timestamptz IS NULL OR start_time >= %s) AND (%s::timestamptz IS NULL OR start_time < %s) "
        "AND (%s::uuid IS NULL OR staff_id = %s) AND (%s::text IS NULL OR status = %s) "
        "AND (%s::timestamptz IS NULL OR (start_time, appointment_id) > (%s, %s)) "
        "ORDER BY start_time, appointment_id LIMIT %s",
        (
            business_id,
            start,
            start,
            end,
            end,
            staff_id,
            staff_id,
            status,
            status,
            after[0] if after else None,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        ),
    )
    return [AppointmentRow(*row) for row in await cur.fetchall()]


# --- idempotency keys -------------------------------------------------------------------------------------

IDEMPOTENCY_TTL = dt.timedelta(hours=24)


async def claim_idempotency_key(
    conn: Conn,
    business_id: uuid.UUID,
    key: str,
    request_hash: str,
    appointment_id: uuid.UUID,
    now: dt.datetime,
) -> tuple[str, uuid.UUID] | None:
    """Claims the key for this request; returns None when claimed, else the holder's (hash, appointment).

    A concurrent request with the same key waits on the primary key until the holder commits or rolls back,
    so there is never more than one winner. A row older than the TTL is expired: it is taken over.
    """
    cur = await conn.execute(
        "INSERT INTO idempotency_key (business_id, key, request_hash, appointment_id, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (business_id, key) DO UPDATE SET "
        "request_hash = excluded.request_hash, appointment_id = excluded.appointment_id, "
        "created_at = excluded.created_at WHERE idempotency_key.created_at <= %s RETURNING 1",
        (business_id, key, request_hash, appointment_id, now, now - IDEMPOTENCY_TTL),
    )
    if await cur.fetchone():
        return None
    cur = await conn.execute(
        "SELECT request_hash, appointment_id FROM idempotency_key WHERE business_id = %s AND key = %s",
        (business_id, key),
    )
    row = await cur.fetchone()
    assert row is not None  # the insert conflicted with this very row
    return str(row[0]), row[1]


async def prune_idempotency_keys(conn: Conn, now: dt.datetime) -> int:
    """Deletes expired keys (lookups already ignore them); run periodically."""
    cur = await conn.execute("DELETE FROM idempotency_key WHERE created_at <= %s", (now - IDEMPOTENCY_TTL,))
    return cur.rowcount


# --- reminders --------------------------------------------------------------------------------------------


async def reminders(conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID) -> list[ReminderRow]:
    cur = await conn.execute(
        "SELECT idempotency_key, remind_at, channel, offset_minutes FROM reminder "
        "WHERE business_id = %s AND appointment_id = %s ORDER BY remind_at, channel",
        (business_id, appointment_id),
    )
    return [ReminderRow(*row) for row in await cur.fetchall()]


async def has_reminder(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, idempotency_key: str
) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM reminder WHERE business_id = %s AND appointment_id = %s AND idempotency_key = %s",
        (business_id, appointment_id, idempotency_key),
    )
    return await cur.fetchone() is not None


async def add_reminders(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, rows: Sequence[ReminderRow]
) -> None:
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO reminder (business_id, appointment_id, idempotency_key, remind_at, channel, "
            "offset_minutes) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (business_id, appointment_id, r.idempotency_key, r.remind_at, r.channel, r.offset_minutes)
                for r in rows
            ],
        )


async def remove_reminders(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID, keys: Sequence[str]
) -> None:
    await conn.execute(
        "DELETE FROM reminder WHERE business_id = %s AND appointment_id = %s AND idempotency_key = ANY(%s)",
        (business_id, appointment_id, list(keys)),
    )
