"""All SQL of the business-service: parameterised psycopg queries that map rows to domain values.

Every query on a tenant table has `business_id = %s` in its WHERE clause (the slug lookup of the public
booking page is the one exception, on the business table itself). Functions take the connection of the
caller's unit of work and never commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg import errors
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from apptremind_platform.db import Conn
from apptremind_platform.errors import AlreadyExists

from .domain import (
    Business,
    Channel,
    DateOverride,
    Interval,
    OverrideKind,
    ReminderPolicy,
    Schedule,
    Service,
    Staff,
)

# The id every page continues after when there is no cursor: no UUID sorts before it, and UUIDv7 ids are
# never all zero.
_BEFORE_ALL = uuid.UUID(int=0)

# --- businesses -----------------------------------------------------------------------------------------

_BUSINESS_COLUMNS = "business_id, name, slug, time_zone, locale, currency, owner_user_id"


def _business(row: Sequence[Any]) -> Business:
    return Business(
        business_id=row[0],
        name=row[1],
        slug=row[2],
        time_zone=row[3],
        locale=row[4],
        currency=row[5],
        owner_user_id=row[6],
    )


async def insert_business(conn: Conn, business: Business) -> bool:
    """Insert unless the id or the slug is taken; True when the row is new."""
    cur = await conn.execute(
        f"INSERT INTO business ({_BUSINESS_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING business_id",
        (
            business.business_id,
            business.name,
            business.slug,
            business.time_zone,
            business.locale,
            business.currency,
            business.owner_user_id,
        ),
    )
    return await cur.fetchone() is not None


async def business_exists(conn: Conn, business_id: uuid.UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM business WHERE business_id = %s", (business_id,))
    return await cur.fetchone() is not None


async def taken_slugs(conn: Conn, candidates: Sequence[str]) -> set[str]:
    cur = await conn.execute("SELECT slug FROM business WHERE slug = ANY(%s)", (list(candidates),))
    return {str(row[0]) for row in await cur.fetchall()}


async def get_business(conn: Conn, business_id: uuid.UUID, *, for_update: bool = False) -> Business | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {_BUSINESS_COLUMNS} FROM business WHERE business_id = %s{lock}", (business_id,)
    )
    row = await cur.fetchone()
    return _business(row) if row is not None else None


async def get_business_by_slug(conn: Conn, slug: str) -> Business | None:
    cur = await conn.execute(f"SELECT {_BUSINESS_COLUMNS} FROM business WHERE slug = %s", (slug,))
    row = await cur.fetchone()
    return _business(row) if row is not None else None


async def update_business(conn: Conn, business: Business) -> None:
    await conn.execute(
        "UPDATE business SET name = %s, time_zone = %s, locale = %s, currency = %s, updated_at = now() "
        "WHERE business_id = %s",
        (business.name, business.time_zone, business.locale, business.currency, business.business_id),
    )


# --- staff ----------------------------------------------------------------------------------------------

_STAFF_COLUMNS = "staff_id, business_id, name, email, user_id, active"


def _staff(row: Sequence[Any]) -> Staff:
    return Staff(
        staff_id=row[0], business_id=row[1], name=row[2], email=row[3] or "", user_id=row[4], active=row[5]
    )


async def insert_staff(conn: Conn, staff: Staff) -> None:
    try:
        await conn.execute(
            f"INSERT INTO staff ({_STAFF_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                staff.staff_id,
                staff.business_id,
                staff.name,
                staff.email or None,
                staff.user_id,
                staff.active,
            ),
        )
    except errors.UniqueViolation as exc:
        # Only staff_user can clash: staff_id is freshly generated.
        raise AlreadyExists("staff_user_exists", "this user is already a staff member") from exc


async def count_active_staff(conn: Conn, business_id: uuid.UUID) -> int:
    cur = await conn.execute("SELECT count(*) FROM staff WHERE business_id = %s AND active", (business_id,))
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def get_staff(
    conn: Conn, business_id: uuid.UUID, staff_id: uuid.UUID, *, for_update: bool = False
) -> Staff | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {_STAFF_COLUMNS} FROM staff WHERE business_id = %s AND staff_id = %s{lock}",
        (business_id, staff_id),
    )
    row = await cur.fetchone()
    return _staff(row) if row is not None else None


async def existing_staff_ids(
    conn: Conn, business_id: uuid.UUID, staff_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of staff_ids are staff of this business. FOR SHARE keeps them from vanishing before commit."""
    cur = await conn.execute(
        "SELECT staff_id FROM staff WHERE business_id = %s AND staff_id = ANY(%s) FOR SHARE",
        (business_id, list(staff_ids)),
    )
    return {row[0] for row in await cur.fetchall()}


async def list_staff(conn: Conn, business_id: uuid.UUID, after: uuid.UUID | None, limit: int) -> list[Staff]:
    cur = await conn.execute(
        f"SELECT {_STAFF_COLUMNS} FROM staff WHERE business_id = %s AND staff_id > %s "
        "ORDER BY staff_id LIMIT %s",
        (business_id, after or _BEFORE_ALL, limit),
    )
    return [_staff(row) for row in await cur.fetchall()]


# --- working hours --------------------------------------------------------------------------------------

_HOURS, _BREAK = "hours", "break"


async def replace_schedule(
    conn: Conn,
    business_id: uuid.UUID,
    staff_id: uuid.UUID,
    hours: Sequence[Interval],
    breaks: Sequence[Interval],
) -> None:
    await conn.execute(
        "DELETE FROM working_hours WHERE business_id = %s AND staff_id = %s", (business_id, staff_id)
    )
    rows = [(business_id, staff_id, _HOURS, i.weekday, i.start_minute, i.end_minute) for i in hours]
    rows += [(business_id, staff_id, _BREAK, i.weekday, i.start_minute, i.end_minute) for i in breaks]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO working_hours (business_id, staff_id, kind, weekday, start_minute, end_minute) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )


async def get_schedule(conn: Conn, business_id: uuid.UUID, staff_id: uuid.UUID) -> Schedule:
    cur = await conn.execute(
        "SELECT kind, weekday, start_minute, end_minute FROM working_hours "
        "WHERE business_id = %s AND staff_id = %s ORDER BY kind, weekday, start_minute",
        (business_id, staff_id),
    )
    rows = await cur.fetchall()
    return Schedule(
        business_id=business_id,
        staff_id=staff_id,
        hours=tuple(Interval(r[1], r[2], r[3]) for r in rows if r[0] == _HOURS),
        breaks=tuple(Interval(r[1], r[2], r[3]) for r in rows if r[0] == _BREAK),
    )


# --- date overrides -------------------------------------------------------------------------------------

_OVERRIDE_COLUMNS = "override_id, business_id, staff_id, kind, period, reason"


def _override(row: Sequence[Any]) -> DateOverride:
    period: Range[dt.datetime] = row[4]
    # The table's CHECK rules out unbounded periods.
    assert period.lower is not None
    assert period.upper is not None
    return DateOverride(
        override_id=row[0],
        business_id=row[1],
        staff_id=row[2],
        kind=OverrideKind(row[3]),
        start_time=period.lower.astimezone(dt.UTC),
        end_time=period.upper.astimezone(dt.UTC),
        reason=row[5],
    )


async def insert_override(conn: Conn, override: DateOverride) -> None:
    await conn.execute(
        f"INSERT INTO date_override ({_OVERRIDE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            override.override_id,
            override.business_id,
            override.staff_id,
            override.kind.value,
            Range(override.start_time, override.end_time, "[)"),
            override.reason,
        ),
    )


async def list_overrides(
    conn: Conn, business_id: uuid.UUID, staff_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
) -> list[DateOverride]:
    if staff_id is None:
        query = (
            f"SELECT {_OVERRIDE_COLUMNS} FROM date_override WHERE business_id = %s AND override_id > %s "
            "ORDER BY override_id LIMIT %s"
        )
        params: tuple[object, ...] = (business_id, after or _BEFORE_ALL, limit)
    else:
        query = (
            f"SELECT {_OVERRIDE_COLUMNS} FROM date_override "
            "WHERE business_id = %s AND staff_id = %s AND override_id > %s ORDER BY override_id LIMIT %s"
        )
        params = (business_id, staff_id, after or _BEFORE_ALL, limit)
    cur = await conn.execute(query, params)
    return [_override(row) for row in await cur.fetchall()]


# --- services -------------------------------------------------------------------------------------------

# The staff list rides along as an array, sorted so that events and responses are stable.
_SERVICE_SELECT = (
    "SELECT s.service_id, s.business_id, s.name, s.duration_minutes, s.price_minor, s.currency, "
    "s.buffer_before_minutes, s.buffer_after_minutes, s.active, s.deposit_minor, s.free_cancellation_hours, "
    "ARRAY(SELECT ss.staff_id FROM service_staff ss "
    "      WHERE ss.business_id = s.business_id AND ss.service_id = s.service_id ORDER BY ss.staff_id) "
    "FROM service s"
)


def _service(row: Sequence[Any]) -> Service:
    return Service(
        service_id=row[0],
        business_id=row[1],
        name=row[2],
        duration_minutes=row[3],
        price_minor=row[4],
        currency=row[5],
        buffer_before_minutes=row[6],
        buffer_after_minutes=row[7],
        active=row[8],
        deposit_minor=row[9],
        free_cancellation_hours=row[10],
        staff_ids=tuple(row[11]),
    )


async def insert_service(conn: Conn, service: Service) -> None:
    await conn.execute(
        "INSERT INTO service (service_id, business_id, name, duration_minutes, price_minor, currency, "
        "buffer_before_minutes, buffer_after_minutes, active, deposit_minor, free_cancellation_hours) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            service.service_id,
            service.business_id,
            service.name,
            service.duration_minutes,
            service.price_minor,
            service.currency,
            service.buffer_before_minutes,
            service.buffer_after_minutes,
            service.active,
            service.deposit_minor,
            service.free_cancellation_hours,
        ),
    )
    await _insert_service_staff(conn, service)


async def _insert_service_staff(conn: Conn, service: Service) -> None:
    if service.staff_ids:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO service_staff (business_id, service_id, staff_id) VALUES (%s, %s, %s)",
                [(service.business_id, service.service_id, staff_id) for staff_id in service.staff_ids],
            )


async def update_service(conn: Conn, service: Service, *, replace_staff: bool) -> None:
    await conn.execute(
        "UPDATE service SET name = %s, duration_minutes = %s, price_minor = %s, currency = %s, "
        "buffer_before_minutes = %s, buffer_after_minutes = %s, active = %s, deposit_minor = %s, "
        "free_cancellation_hours = %s, updated_at = now() WHERE business_id = %s AND service_id = %s",
        (
            service.name,
            service.duration_minutes,
            service.price_minor,
            service.currency,
            service.buffer_before_minutes,
            service.buffer_after_minutes,
            service.active,
            service.deposit_minor,
            service.free_cancellation_hours,
            service.business_id,
            service.service_id,
        ),
    )
    if replace_staff:
        await conn.execute(
            "DELETE FROM service_staff WHERE business_id = %s AND service_id = %s",
            (service.business_id, service.service_id),
        )
        await _insert_service_staff(conn, service)


async def get_service(
    conn: Conn, business_id: uuid.UUID, service_id: uuid.UUID, *, for_update: bool = False
) -> Service | None:
    lock = " FOR UPDATE OF s" if for_update else ""
    cur = await conn.execute(
        f"{_SERVICE_SELECT} WHERE s.business_id = %s AND s.service_id = %s{lock}", (business_id, service_id)
    )
    row = await cur.fetchone()
    return _service(row) if row is not None else None


async def list_services(
    conn: Conn, business_id: uuid.UUID, include_inactive: bool, after: uuid.UUID | None, limit: int
) -> list[Service]:
    active = "" if include_inactive else " AND s.active"
    cur = await conn.execute(
        f"{_SERVICE_SELECT} WHERE s.business_id = %s AND s.service_id > %s{active} "
        "ORDER BY s.service_id LIMIT %s",
        (business_id, after or _BEFORE_ALL, limit),
    )
    return [_service(row) for row in await cur.fetchall()]


# --- reminder policy ------------------------------------------------------------------------------------


async def save_policy(conn: Conn, policy: ReminderPolicy) -> None:
    await conn.execute(
        "INSERT INTO reminder_policy (business_id, offsets_minutes, channels, quiet_hours_start, "
        "quiet_hours_end, templates) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (business_id) DO UPDATE SET offsets_minutes = excluded.offsets_minutes, "
        "channels = excluded.channels, quiet_hours_start = excluded.quiet_hours_start, "
        "quiet_hours_end = excluded.quiet_hours_end, templates = excluded.templates, updated_at = now()",
        (
            policy.business_id,
            list(policy.offsets_minutes),
            [c.value for c in policy.channels],
            policy.quiet_hours_start,
            policy.quiet_hours_end,
            Jsonb(dict(policy.templates)),
        ),
    )


async def get_policy(conn: Conn, business_id: uuid.UUID) -> ReminderPolicy | None:
    cur = await conn.execute(
        "SELECT offsets_minutes, channels, quiet_hours_start, quiet_hours_end, templates "
        "FROM reminder_policy WHERE business_id = %s",
        (business_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return ReminderPolicy(
        business_id=business_id,
        offsets_minutes=tuple(row[0]),
        channels=tuple(Channel(c) for c in row[1]),
        quiet_hours_start=row[2],
        quiet_hours_end=row[3],
        templates={str(k): str(v) for k, v in row[4].items()},
    )
