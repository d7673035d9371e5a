"""Billing use cases that call Stripe: checkout, portal and cancellation.

Stripe is called between short transactions, never inside one, so no row lock waits on the network.
"""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlsplit

from psycopg_pool import AsyncConnectionPool

from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import FailedPrecondition, InvalidArgument

from . import plans, subscriptions
from .stripe_gateway import CheckoutSession, StripeGateway
from .subscriptions import SubscriptionState


def parse_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"invalid_{field}", f"{field} must be a UUID") from None


def return_url(value: str, default: str, field: str) -> str:
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 2000:
        raise InvalidArgument(f"invalid_{field}", f"{field} must be an absolute http(s) URL")
    return value


async def _customer(pool: AsyncConnectionPool, gateway: StripeGateway, business_id: uuid.UUID) -> str:
    async with unit_of_work(pool) as conn:
        state = await subscriptions.get(conn, business_id)
    if state.stripe_customer_id:
        return state.stripe_customer_id
    created = await gateway.create_customer(str(business_id))
    async with unit_of_work(pool) as conn:
        state = await subscriptions.lock(conn, business_id)
        if state.stripe_customer_id:  # a concurrent first checkout stored one first
            return state.stripe_customer_id
        async with conn.cursor() as cur:
            await cur.execute(
                "UPDATE subscription SET stripe_customer_id = %s WHERE business_id = %s",
                (created, business_id),
            )
    return created


async def start_checkout(
    pool: AsyncConnectionPool,
    gateway: StripeGateway,
    prices: dict[str, str],
    business_id: uuid.UUID,
    plan: str,
    success_url: str,
    cancel_url: str,
) -> CheckoutSession:
    async with unit_of_work(pool) as conn:
        if plan == plans.FREE or not await plans.exists(conn, plan):
            raise InvalidArgument("invalid_plan", "plan must be a paid plan")
        state = await subscriptions.get(conn, business_id)
    price = prices.get(plan)
    if price is None:
        raise FailedPrecondition("plan_not_purchasable", f"no Stripe price is configured for {plan}")
    if state.paid:
        # A second subscription would bill twice; plan changes of a subscriber go through the portal.
        raise FailedPrecondition(
            "already_subscribed", "the business has a subscription; use the billing portal"
        )
    customer = await _customer(pool, gateway, business_id)
    return await gateway.create_checkout_session(
        customer, price, str(business_id), plan, success_url, cancel_url
    )


async def portal_url(
    pool: AsyncConnectionPool, gateway: StripeGateway, business_id: uuid.UUID, url: str
) -> str:
    async with unit_of_work(pool) as conn:
        state = await subscriptions.get(conn, business_id)
    if not state.stripe_customer_id:
        raise FailedPrecondition("no_billing_account", "the business has not started a checkout yet")
    return await gateway.create_portal_session(state.stripe_customer_id, url)


async def cancel(
    pool: AsyncConnectionPool,
    gateway: StripeGateway,
    business_id: uuid.UUID,
    at_period_end: bool,
    now: dt.datetime,
) -> SubscriptionState:
    async with unit_of_work(pool) as conn:
        state = await subscriptions.get(conn, business_id)
    if not state.paid or not state.stripe_subscription_id:
        raise FailedPrecondition("not_subscribed", "the business has no paid subscription")
    await gateway.cancel_subscription(state.stripe_subscription_id, at_period_end)
    # Stripe's webhook brings the final state; cancel_at_period_end is recorded now so the answer shows it.
    async with unit_of_work(pool) as conn:
        before = await subscriptions.lock(conn, business_id)
        if at_period_end and before.paid:
            return await subscriptions.save(conn, before, before.replace(cancel_at_period_end=True), now)
        return before
