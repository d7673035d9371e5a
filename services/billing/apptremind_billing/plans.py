"""Plans and their entitlements, read from the tables the migration seeds."""

from __future__ import annotations

from dataclasses import dataclass, field

from apptremind_platform.db import Conn

FREE = "free"
UNLIMITED = -1
FEATURES = ("staff_seats", "sms_per_month", "custom_templates")
# Metered features: the meter name a caller reserves against -> the entitlement that bounds it per period.
METERS = {"sms": "sms_per_month"}


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    name: str
    rank: int
    price_minor: int
    currency: str
    entitlements: dict[str, int] = field(default_factory=dict)


async def list_plans(conn: Conn) -> list[Plan]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT p.plan_id, p.name, p.rank, p.price_minor, p.currency, e.feature, e.limit_value"
            " FROM plan p LEFT JOIN plan_entitlement e USING (plan_id) ORDER BY p.rank, e.feature"
        )
        rows = await cur.fetchall()
    plans: dict[str, Plan] = {}
    for plan_id, name, rank, price, currency, feature, limit in rows:
        plan = plans.setdefault(plan_id, Plan(plan_id, name, rank, price, currency))
        if feature is not None:
            plan.entitlements[feature] = limit
    return list(plans.values())


async def entitlements(conn: Conn, plan_id: str) -> dict[str, int]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT feature, limit_value FROM plan_entitlement WHERE plan_id = %s ORDER BY feature",
            (plan_id,),
        )
        return {feature: limit for feature, limit in await cur.fetchall()}


async def exists(conn: Conn, plan_id: str) -> bool:
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM plan WHERE plan_id = %s", (plan_id,))
        return await cur.fetchone() is not None
