"""The subscription of a business: its row, and every change to it written together with its events.

A business without a row is on the free plan. Changes go through `save`, which compares the state before
and after and writes the matching events to the outbox in the same transaction (events.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

from apptremind_platform.db import Conn

from . import events, plans

PAID_STATUSES = ("active", "trialing", "past_due")

_COLUMNS = (
    "plan_id, paid_plan_id, status, stripe_customer_id, stripe_subscription_id, current_period_end,"
    " cancel_at_period_end, grace_until, stripe_state_at, stripe_state_rank, updated_at"
)


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    business_id: uuid.UUID
    plan_id: str = plans.FREE
    paid_plan_id: str | None = None
    status: str = "free"
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    current_period_end: dt.datetime | None = None
    cancel_at_period_end: bool = False
    grace_until: dt.datetime | None = None
    stripe_state_at: dt.datetime | None = None
    stripe_state_rank: int = 0
    updated_at: dt.datetime | None = None

    @property
    def paid(self) -> bool:
        return self.plan_id != plans.FREE and self.status in PAID_STATUSES

    def replace(self, **changes: object) -> SubscriptionState:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _state(business_id: uuid.UUID, row: tuple[object, ...] | None) -> SubscriptionState:
    if row is None:
        return SubscriptionState(business_id)
    return SubscriptionState(business_id, *row)  # type: ignore[arg-type]


async def get(conn: Conn, business_id: uuid.UUID) -> SubscriptionState:
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM subscription WHERE business_id = %s", (business_id,))
        return _state(business_id, await cur.fetchone())


async def lock(conn: Conn, business_id: uuid.UUID) -> SubscriptionState:
    """The business's subscription, row-locked until the transaction ends (created on the free plan)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO subscription (business_id, plan_id, status) VALUES (%s, 'free', 'free')"
            " ON CONFLICT (business_id) DO NOTHING",
            (business_id,),
        )
        await cur.execute(
            f"SELECT {_COLUMNS} FROM subscription WHERE business_id = %s FOR UPDATE", (business_id,)
        )
        return _state(business_id, await cur.fetchone())


async def business_for_stripe(conn: Conn, customer_id: str, subscription_id: str) -> uuid.UUID | None:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT business_id FROM subscription WHERE (stripe_customer_id = %s AND %s <> '')"
            " OR (stripe_subscription_id = %s AND %s <> '') LIMIT 1",
            (customer_id, customer_id, subscription_id, subscription_id),
        )
        row = await cur.fetchone()
        return row[0] if row else None


async def save(
    conn: Conn, before: SubscriptionState, after: SubscriptionState, now: dt.datetime, reason: str = ""
) -> SubscriptionState:
    """Writes `after` (the row must be locked) and its events; returns it with updated_at set."""
    if after == before:
        return before
    after = after.replace(updated_at=now)
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE subscription SET plan_id = %s, paid_plan_id = %s, status = %s, stripe_customer_id = %s,"
            " stripe_subscription_id = %s, current_period_end = %s, cancel_at_period_end = %s,"
            " grace_until = %s, stripe_state_at = %s, stripe_state_rank = %s, updated_at = %s"
            " WHERE business_id = %s",
            (
                after.plan_id,
                after.paid_plan_id,
                after.status,
                after.stripe_customer_id,
                after.stripe_subscription_id,
                after.current_period_end,
                after.cancel_at_period_end,
                after.grace_until,
                after.stripe_state_at,
                after.stripe_state_rank,
                now,
                after.business_id,
            ),
        )
    await _publish_changes(conn, before, after, reason)
    return after


_VISIBLE = ("plan_id", "status", "current_period_end", "cancel_at_period_end", "grace_until")


def visible_change(before: SubscriptionState, after: SubscriptionState) -> bool:
    """Whether anything a consumer keeps changed (not only Stripe ids or ordering marks)."""
    return any(getattr(before, name) != getattr(after, name) for name in _VISIBLE)


async def _publish_changes(
    conn: Conn, before: SubscriptionState, after: SubscriptionState, reason: str
) -> None:
    if not visible_change(before, after):
        return
    limits = await plans.entitlements(conn, after.plan_id)
    if (after.paid and not before.paid) or (after.paid and after.plan_id != before.plan_id):
        await events.publish(conn, events.subscription_activated(after, limits))
    elif before.paid and not after.paid:
        ended = reason or "cancelled"
        await events.publish(conn, events.subscription_cancelled(before.plan_id, after, limits, ended))
    else:
        await events.publish(conn, events.subscription_updated(after, limits))
    if after.plan_id != before.plan_id:
        await events.publish(conn, events.entitlements_changed(after.business_id, after.plan_id, limits))
