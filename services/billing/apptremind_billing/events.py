"""What the billing-service publishes through the outbox, keyed by business_id.

Every event carries the whole current state (the full entitlement set, the whole subscription), so a
consumer's read model is a plain upsert.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from apptremind_gen.apptremind.events.billing import v1 as ev
from apptremind_platform import outbox
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Event

from . import convert

if TYPE_CHECKING:
    from .subscriptions import SubscriptionState

SOURCE = "billing"

SUBSCRIPTION_ACTIVATED = "billing.subscription.activated.v1"
SUBSCRIPTION_UPDATED = "billing.subscription.updated.v1"
SUBSCRIPTION_CANCELLED = "billing.subscription.cancelled.v1"
ENTITLEMENTS_CHANGED = "billing.entitlements.changed.v1"


async def publish(conn: Conn, event: Event) -> None:
    await outbox.add(conn, event, source=SOURCE)


def subscription_activated(state: SubscriptionState, limits: dict[str, int]) -> Event:
    bid = str(state.business_id)
    return Event(
        SUBSCRIPTION_ACTIVATED,
        bid,
        ev.SubscriptionActivated(
            business_id=bid,
            subscription_id=state.stripe_subscription_id or "",
            plan=state.plan_id,
            subscription=convert.subscription(state, limits),
        ),
        subject=bid,
    )


def subscription_updated(state: SubscriptionState, limits: dict[str, int]) -> Event:
    bid = str(state.business_id)
    return Event(
        SUBSCRIPTION_UPDATED,
        bid,
        ev.SubscriptionUpdated(subscription=convert.subscription(state, limits)),
        subject=bid,
    )


def subscription_cancelled(
    previous_plan: str, state: SubscriptionState, limits: dict[str, int], reason: str
) -> Event:
    bid = str(state.business_id)
    return Event(
        SUBSCRIPTION_CANCELLED,
        bid,
        ev.SubscriptionCancelled(
            business_id=bid,
            subscription_id=state.stripe_subscription_id or "",
            previous_plan=previous_plan,
            reason=reason,
            subscription=convert.subscription(state, limits),
        ),
        subject=bid,
    )


def entitlements_changed(business_id: uuid.UUID, plan_id: str, limits: dict[str, int]) -> Event:
    bid = str(business_id)
    return Event(
        ENTITLEMENTS_CHANGED,
        bid,
        ev.EntitlementsChanged(business_id=bid, plan=plan_id, limits=dict(limits)),
        subject=bid,
    )
