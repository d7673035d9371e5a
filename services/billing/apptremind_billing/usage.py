"""Usage metering with reservations: reserve, then commit or release; stale reservations expire.

The quota is enforced by one conditional UPDATE on the period's counter
(`reserved = reserved + q WHERE used + reserved + q <= limit`): Postgres serialises concurrent updates of
the row and re-evaluates the condition on the latest version, so concurrent reservations can never
overshoot. Billing periods are calendar months in UTC.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from apptremind_platform.db import Conn
from apptremind_platform.errors import FailedPrecondition, NotFound, ResourceExhausted

from . import plans, subscriptions

DEFAULT_TTL = dt.timedelta(minutes=5)
MAX_TTL = dt.timedelta(hours=24)
MAX_QUANTITY = 10_000


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: uuid.UUID
    business_id: uuid.UUID
    meter: str
    quantity: int
    status: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Reserved:
    reservation: Reservation
    replayed: bool


@dataclass(frozen=True, slots=True)
class MeterUsage:
    meter: str
    period_start: dt.datetime
    period_end: dt.datetime
    limit: int
    used: int
    reserved: int


def period_of(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


async def limit_for(conn: Conn, business_id: uuid.UUID, meter: str) -> int:
    state = await subscriptions.get(conn, business_id)
    limits = await plans.entitlements(conn, state.plan_id)
    # A plan without the entitlement does not offer the feature.
    return limits.get(plans.METERS[meter], 0)


_RESERVATION_COLUMNS = "reservation_id, business_id, meter, quantity, status, expires_at"


async def _find(conn: Conn, business_id: uuid.UUID, reservation_id: uuid.UUID) -> Reservation | None:
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_RESERVATION_COLUMNS} FROM usage_reservation"
            " WHERE business_id = %s AND reservation_id = %s",
            (business_id, reservation_id),
        )
        row = await cur.fetchone()
    return Reservation(*row) if row else None


async def reserve(
    conn: Conn,
    business_id: uuid.UUID,
    meter: str,
    quantity: int,
    reservation_id: uuid.UUID,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> Reserved:
    start, end = period_of(now)
    expires_at = now + ttl
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO usage_period (business_id, meter, period_start, period_end) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (business_id, meter, start, end),
        )
        # A concurrent request with the same id waits here until the first commits or rolls back.
        await cur.execute(
            "INSERT INTO usage_reservation"
            " (business_id, reservation_id, meter, period_start, quantity, status, expires_at, created_at,"
            "  updated_at)"
            " VALUES (%s, %s, %s, %s, %s, 'reserved', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (business_id, reservation_id, meter, start, quantity, expires_at, now, now),
        )
        if await cur.fetchone() is None:
            existing = await _find(conn, business_id, reservation_id)
            assert existing is not None
            if existing.meter != meter or existing.quantity != quantity:
                raise FailedPrecondition(
                    "reservation_id_reused", "this reservation_id was used for another meter or quantity"
                )
            return Reserved(existing, replayed=True)
    await expire_stale(conn, now, business_id, meter)
    limit = await limit_for(conn, business_id, meter)
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE usage_period SET reserved = reserved + %(q)s"
            " WHERE business_id = %(b)s AND meter = %(m)s AND period_start = %(s)s"
            " AND (%(limit)s < 0 OR used + reserved + %(q)s <= %(limit)s) RETURNING used, reserved",
            {"q": quantity, "b": business_id, "m": meter, "s": start, "limit": limit},
        )
        if await cur.fetchone() is None:
            # Raising rolls the reservation row back with it.
            raise ResourceExhausted(
                "quota_exceeded", f"the plan's {meter} quota for this period is used up", limit=str(limit)
            )
    reservation = Reservation(reservation_id, business_id, meter, quantity, "reserved", expires_at)
    return Reserved(reservation, replayed=False)


async def commit(
    conn: Conn, business_id: uuid.UUID, reservation_id: uuid.UUID, now: dt.datetime
) -> Reservation:
    return await _settle(conn, business_id, reservation_id, now, "committed")


async def release(
    conn: Conn, business_id: uuid.UUID, reservation_id: uuid.UUID, now: dt.datetime
) -> Reservation:
    return await _settle(conn, business_id, reservation_id, now, "released")


async def _settle(
    conn: Conn, business_id: uuid.UUID, reservation_id: uuid.UUID, now: dt.datetime, outcome: str
) -> Reservation:
    async with conn.cursor() as cur:
        await cur.execute(
            f"UPDATE usage_reservation SET status = %s, updated_at = %s"
            f" WHERE business_id = %s AND reservation_id = %s AND status = 'reserved' AND expires_at > %s"
            f" RETURNING {_RESERVATION_COLUMNS}, period_start",
            (outcome, now, business_id, reservation_id, now),
        )
        row = await cur.fetchone()
        if row is not None:
            used = row[3] if outcome == "committed" else 0
            await cur.execute(
                "UPDATE usage_period SET reserved = reserved - %s, used = used + %s"
                " WHERE business_id = %s AND meter = %s AND period_start = %s",
                (row[3], used, business_id, row[2], row[6]),
            )
            return Reservation(*row[:6])
    existing = await _find(conn, business_id, reservation_id)
    if existing is None:
        raise NotFound("reservation_not_found", "no such reservation")
    if existing.status == outcome:
        return existing
    if existing.status == "reserved" or existing.status == "expired":
        raise FailedPrecondition("reservation_expired", "the reservation has expired")
    raise FailedPrecondition(
        f"reservation_{existing.status}", f"the reservation is already {existing.status}"
    )


async def expire_stale(
    conn: Conn, now: dt.datetime, business_id: uuid.UUID | None = None, meter: str | None = None
) -> int:
    """Expires held reservations past their time and gives their units back; returns how many.

    The status condition makes this safe to run concurrently: a row expired by one transaction no longer
    matches in another, so its units are given back once.
    """
    scope = ""
    params: list[object] = [now, now]
    if business_id is not None and meter is not None:
        scope = " AND business_id = %s AND meter = %s"
        params += [business_id, meter]
    async with conn.cursor() as cur:
        await cur.execute(
            "WITH expired AS ("
            " UPDATE usage_reservation SET status = 'expired', updated_at = %s"
            f" WHERE status = 'reserved' AND expires_at <= %s{scope}"
            " RETURNING business_id, meter, period_start, quantity),"
            " totals AS (SELECT business_id, meter, period_start, sum(quantity) AS q, count(*) AS n"
            "  FROM expired GROUP BY 1, 2, 3)"
            " UPDATE usage_period p SET reserved = p.reserved - t.q FROM totals t"
            " WHERE p.business_id = t.business_id AND p.meter = t.meter AND p.period_start = t.period_start"
            " RETURNING t.n",
            params,
        )
        return sum(int(n) for (n,) in await cur.fetchall())


async def current(
    conn: Conn, business_id: uuid.UUID, meters: list[str], now: dt.datetime
) -> list[MeterUsage]:
    start, end = period_of(now)
    state = await subscriptions.get(conn, business_id)
    limits = await plans.entitlements(conn, state.plan_id)
    out = []
    async with conn.cursor() as cur:
        for meter in meters:
            # Held reservations past their expiry no longer count, even before housekeeping expires them.
            await cur.execute(
                "SELECT p.used, coalesce((SELECT sum(quantity) FROM usage_reservation r"
                "  WHERE r.business_id = p.business_id AND r.meter = p.meter"
                "  AND r.period_start = p.period_start AND r.status = 'reserved' AND r.expires_at > %s), 0)"
                " FROM usage_period p WHERE p.business_id = %s AND p.meter = %s AND p.period_start = %s",
                (now, business_id, meter, start),
            )
            row = await cur.fetchone()
            used, reserved = (int(row[0]), int(row[1])) if row else (0, 0)
            out.append(MeterUsage(meter, start, end, limits.get(plans.METERS[meter], 0), used, reserved))
    return out
