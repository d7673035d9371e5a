"""Stripe webhooks: verify, parse, dedupe by event id, and apply to the business's subscription.

Stripe delivers at least once and in no particular order. Each event id is recorded in `stripe_event` in
the same transaction as its effect, so a redelivery has none. Subscription state carries the (event
time, type rank) of the last state applied; an older delivery (an `updated` overtaken by a later one, a
`created` arriving after its `updated`) leaves the state alone (docs/adr/0012).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apptremind_platform.db import Conn
from apptremind_platform.errors import InvalidArgument, PermissionDenied
from apptremind_platform.logs import get_logger
from apptremind_platform.webhook_signatures import StripeSignatureError, verify_stripe_signature

from . import deposits, plans, subscriptions
from .subscriptions import SubscriptionState

log = get_logger(__name__)

# Within one second (Stripe's timestamp resolution) a later lifecycle step wins over an earlier one.
TYPE_RANK = {
    "checkout.session.completed": 1,
    "customer.subscription.created": 1,
    "customer.subscription.updated": 2,
    "invoice.paid": 2,
    "invoice.payment_failed": 2,
    "customer.subscription.deleted": 3,
}
MAX_PAYLOAD_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class StripeEvent:
    event_id: str
    event_type: str
    created: dt.datetime
    obj: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    event_id: str
    event_type: str
    duplicate: bool
    applied: bool


@dataclass(frozen=True, slots=True)
class Policy:
    """What applying an event needs beyond the event: plan prices and the grace period."""

    price_to_plan: Mapping[str, str]
    grace: dt.timedelta


def verify(secret: str, payload: bytes, signature: str, now: dt.datetime, tolerance_s: int) -> None:
    if not secret:
        raise PermissionDenied("webhook_secret_not_configured", "no Stripe webhook secret is configured")
    try:
        verify_stripe_signature(secret, payload, signature, now.timestamp(), tolerance_s)
    except StripeSignatureError as exc:
        raise PermissionDenied(exc.reason, str(exc)) from exc


def parse(payload: bytes) -> StripeEvent:
    malformed = InvalidArgument("malformed_event", "the body is not a Stripe event")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument("payload_too_large", "the webhook body is too large")
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise malformed from None
    if not isinstance(body, dict):
        raise malformed
    event_id, event_type, created = body.get("id"), body.get("type"), body.get("created")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if (
        not isinstance(event_id, str)
        or not event_id.startswith("evt_")
        or len(event_id) > 255
        or not isinstance(event_type, str)
        or not event_type
        or not isinstance(created, int)
        or isinstance(created, bool)
        or created <= 0
        or not isinstance(obj, dict)
    ):
        raise malformed
    return StripeEvent(event_id, event_type, dt.datetime.fromtimestamp(created, dt.UTC), obj)


async def handle(conn: Conn, event: StripeEvent, policy: Policy, now: dt.datetime) -> WebhookResult:
    business_id = await _business_of(conn, event)
    async with conn.cursor() as cur:
        # A concurrent delivery of the same event waits here until this transaction ends, then sees it.
        await cur.execute(
            "INSERT INTO stripe_event (event_id, event_type, business_id, event_created, applied, received_at)"
            " VALUES (%s, %s, %s, %s, false, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (event.event_id, event.event_type, business_id, event.created, now),
        )
        if await cur.fetchone() is None:
            return WebhookResult(event.event_id, event.event_type, duplicate=True, applied=False)
    applied = False
    if business_id is not None and event.event_type in TYPE_RANK:
        before = await subscriptions.lock(conn, business_id)
        after = await _apply(conn, event, before, policy, now)
        await subscriptions.save(conn, before, after, now)
        applied = subscriptions.visible_change(before, after)
    elif event.event_type in deposits.WEBHOOK_TYPES:
        applied = await deposits.apply_webhook(conn, event.event_type, event.obj, now)
    else:
        log.info("stripe_event_ignored", event_id=event.event_id, type=event.event_type, business=business_id)
    if applied:
        async with conn.cursor() as cur:
            await cur.execute("UPDATE stripe_event SET applied = true WHERE event_id = %s", (event.event_id,))
    return WebhookResult(event.event_id, event.event_type, duplicate=False, applied=applied)


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _subscription_id(event: StripeEvent) -> str:
    obj = event.obj
    if event.event_type.startswith("customer.subscription."):
        return _str(obj, "id")
    found = _str(obj, "subscription")
    if not found:  # newer API versions moved it under parent.subscription_details
        parent = obj.get("parent")
        details = parent.get("subscription_details") if isinstance(parent, dict) else None
        if isinstance(details, dict):
            found = _str(details, "subscription")
    return found


async def _business_of(conn: Conn, event: StripeEvent) -> uuid.UUID | None:
    for candidate in (_metadata(event.obj).get("business_id"), event.obj.get("client_reference_id")):
        if isinstance(candidate, str):
            try:
                return uuid.UUID(candidate)
            except ValueError:
                continue
    return await subscriptions.business_for_stripe(conn, _str(event.obj, "customer"), _subscription_id(event))


def _newer(event: StripeEvent, state: SubscriptionState) -> bool:
    if state.stripe_state_at is None:
        return True
    return (event.created, TYPE_RANK[event.event_type]) >= (state.stripe_state_at, state.stripe_state_rank)


def _mark(event: StripeEvent, state: SubscriptionState) -> SubscriptionState:
    return state.replace(stripe_state_at=event.created, stripe_state_rank=TYPE_RANK[event.event_type])


async def _plan_of(conn: Conn, obj: Mapping[str, Any], policy: Policy) -> str | None:
    """The paid plan a checkout session or subscription is for: its price, else its metadata.

    The price wins: a plan changed in the customer portal changes the price, not the metadata written at
    checkout."""
    candidates: list[object] = []
    items = obj.get("items")
    for item in items.get("data", []) if isinstance(items, dict) else []:
        price = item.get("price") if isinstance(item, dict) else None
        if isinstance(price, dict):
            candidates.append(policy.price_to_plan.get(_str(price, "id")))
    candidates.append(_metadata(obj).get("plan"))
    for plan in candidates:
        if isinstance(plan, str) and plan != plans.FREE and await plans.exists(conn, plan):
            return plan
    return None


def _period_end(obj: Mapping[str, Any]) -> dt.datetime | None:
    value = obj.get("current_period_end")
    if not isinstance(value, int):  # newer API versions keep periods on the items
        items = obj.get("items")
        data = items.get("data") if isinstance(items, dict) else None
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        value = first.get("current_period_end")
    return dt.datetime.fromtimestamp(value, dt.UTC) if isinstance(value, int) and value > 0 else None


def _ids(event: StripeEvent, state: SubscriptionState) -> SubscriptionState:
    customer = _str(event.obj, "customer") or state.stripe_customer_id
    subscription = _subscription_id(event) or state.stripe_subscription_id
    return state.replace(stripe_customer_id=customer or None, stripe_subscription_id=subscription or None)


def _active(state: SubscriptionState, plan: str, status: str) -> SubscriptionState:
    return state.replace(plan_id=plan, paid_plan_id=plan, status=status, grace_until=None)


def _free(state: SubscriptionState, keep_paid_plan: bool) -> SubscriptionState:
    return state.replace(
        plan_id=plans.FREE,
        paid_plan_id=state.paid_plan_id if keep_paid_plan else None,
        status="canceled",
        grace_until=None,
        cancel_at_period_end=False,
    )


async def _apply(
    conn: Conn, event: StripeEvent, before: SubscriptionState, policy: Policy, now: dt.datetime
) -> SubscriptionState:
    kind, obj = event.event_type, event.obj
    # Ids are facts, whatever the order of arrival; the state below only moves forward in event time.
    state = _ids(event, before)
    if not _newer(event, before):
        log.info("stripe_event_stale", event_id=event.event_id, type=kind, business=str(before.business_id))
        return state
    if kind == "checkout.session.completed":
        plan = await _plan_of(conn, obj, policy)
        if plan is None:
            return state
        paid = obj.get("payment_status") in ("paid", "no_payment_required")
        if paid:
            return _mark(event, _active(state, plan, "active"))
        return _mark(
            event, state.replace(paid_plan_id=plan, status="incomplete") if not before.paid else state
        )
    if kind in ("customer.subscription.created", "customer.subscription.updated"):
        return _mark(event, await _subscription_state(conn, event, state, policy, now))
    if kind == "customer.subscription.deleted":
        return _mark(event, _free(state, keep_paid_plan=False).replace(current_period_end=_period_end(obj)))
    if kind == "invoice.paid":
        if state.paid_plan_id and state.status in ("past_due", "canceled", "incomplete"):
            return _mark(event, _active(state, state.paid_plan_id, "active"))
        return state
    if kind == "invoice.payment_failed":
        if state.paid:
            grace = state.grace_until or now + policy.grace
            return _mark(event, state.replace(status="past_due", grace_until=grace))
        return state
    return state


async def _subscription_state(
    conn: Conn, event: StripeEvent, state: SubscriptionState, policy: Policy, now: dt.datetime
) -> SubscriptionState:
    obj = event.obj
    status = _str(obj, "status")
    plan = await _plan_of(conn, obj, policy) or state.paid_plan_id
    state = state.replace(
        current_period_end=_period_end(obj) or state.current_period_end,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
    )
    if plan is None:
        return state
    if status in ("active", "trialing"):
        return _active(state, plan, status)
    if status == "past_due":
        grace = state.grace_until or now + policy.grace
        return state.replace(plan_id=plan, paid_plan_id=plan, status="past_due", grace_until=grace)
    if status == "incomplete":
        return state if state.paid else state.replace(paid_plan_id=plan, status="incomplete")
    # canceled, unpaid, incomplete_expired, paused: the paid plan is not in force.
    return _free(state.replace(paid_plan_id=plan), keep_paid_plan=status == "unpaid")


async def downgrade_after_grace(conn: Conn, now: dt.datetime) -> int:
    """Moves past-due businesses whose grace period is over to the free plan; returns how many."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT business_id FROM subscription WHERE status = 'past_due' AND grace_until <= %s"
            " ORDER BY business_id LIMIT 100 FOR UPDATE SKIP LOCKED",
            (now,),
        )
        due = [row[0] for row in await cur.fetchall()]
    for business_id in due:
        before = await subscriptions.lock(conn, business_id)
        after = _free(before, keep_paid_plan=True)
        await subscriptions.save(conn, before, after, now, reason="payment_failed")
    return len(due)
