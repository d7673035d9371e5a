"""Billing operations: the plans, a business's subscription and usage, and the Stripe-hosted pages that
change the subscription (Checkout to upgrade, the customer portal, cancellation), all from billing-service.

A plan changes only when Stripe's webhook reaches billing-service (`POST /webhooks/stripe`), so after
`startCheckout` the client sends the user to the URL and later reads `subscription` again.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

import strawberry

from apptremind_gen.apptremind.billing import v1 as billing

from .context import EdgeContext

Info = strawberry.Info[EdgeContext, None]


@strawberry.type(description="What a plan allows of one feature.")
class Entitlement:
    feature: str = strawberry.field(description="staff_seats, sms_per_month or custom_templates.")
    limit: int = strawberry.field(description="-1 when unlimited; 0/1 for on/off features.")


def entitlements(values: Mapping[str, int]) -> list[Entitlement]:
    return [Entitlement(feature=k, limit=v) for k, v in sorted(values.items())]


@strawberry.type
class Plan:
    id: strawberry.ID = strawberry.field(description="free, pro or business.")
    name: str
    price_minor: int = strawberry.field(description="Monthly price in minor units of the currency.")
    currency: str
    rank: int = strawberry.field(description="Plans ordered from the smallest.")
    entitlements: list[Entitlement]

    @classmethod
    def of(cls, p: billing.Plan) -> Plan:
        return cls(
            id=strawberry.ID(p.plan_id),
            name=p.name,
            price_minor=p.price_minor,
            currency=p.currency,
            rank=p.rank,
            entitlements=entitlements(p.entitlements),
        )


@strawberry.enum
class SubscriptionStatus(enum.Enum):
    FREE = "FREE"
    ACTIVE = "ACTIVE"
    TRIALING = "TRIALING"
    PAST_DUE = "PAST_DUE"
    CANCELED = "CANCELED"
    INCOMPLETE = "INCOMPLETE"


STATUS_FROM_PROTO = {
    billing.SubscriptionStatus.FREE: SubscriptionStatus.FREE,
    billing.SubscriptionStatus.ACTIVE: SubscriptionStatus.ACTIVE,
    billing.SubscriptionStatus.TRIALING: SubscriptionStatus.TRIALING,
    billing.SubscriptionStatus.PAST_DUE: SubscriptionStatus.PAST_DUE,
    billing.SubscriptionStatus.CANCELED: SubscriptionStatus.CANCELED,
    billing.SubscriptionStatus.INCOMPLETE: SubscriptionStatus.INCOMPLETE,
}


@strawberry.type(name="BillingSubscription", description="A business's plan and its Stripe subscription.")
class Subscription:
    business_id: strawberry.ID
    plan: str = strawberry.field(description="The plan in force now.")
    status: SubscriptionStatus
    current_period_end: dt.datetime | None
    cancel_at_period_end: bool
    grace_until: dt.datetime | None = strawberry.field(
        description="After a failed payment: when the business falls back to the free plan."
    )
    entitlements: list[Entitlement] = strawberry.field(description="What the plan in force allows.")
    updated_at: dt.datetime | None

    @classmethod
    def of(cls, s: billing.Subscription | None) -> Subscription:
        assert s is not None
        return cls(
            business_id=strawberry.ID(s.business_id),
            plan=s.plan,
            # A status this edge does not know yet reads as the safest one.
            status=STATUS_FROM_PROTO.get(s.status, SubscriptionStatus.FREE),
            current_period_end=s.current_period_end,
            cancel_at_period_end=s.cancel_at_period_end,
            grace_until=s.grace_until,
            entitlements=entitlements(s.entitlements),
            updated_at=s.updated_at,
        )


@strawberry.type(description="One meter in the current billing period (a calendar month in UTC).")
class Usage:
    meter: str = strawberry.field(description="e.g. sms.")
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    limit: int = strawberry.field(description="-1 when unlimited.")
    used: int
    reserved: int = strawberry.field(description="Held by sends in progress, not yet used.")

    @classmethod
    def of(cls, u: billing.Usage) -> Usage:
        return cls(
            meter=u.meter,
            period_start=u.period_start,
            period_end=u.period_end,
            limit=u.limit,
            used=u.used,
            reserved=u.reserved,
        )


async def get_subscription(info: Info, business_id: str) -> Subscription:
    response = await info.context.call(
        "billing",
        "GetSubscription",
        billing.GetSubscriptionRequest(business_id=business_id),
        billing.GetSubscriptionResponse,
    )
    return Subscription.of(response.subscription)


@strawberry.type
class BillingQuery:
    # Every plan, smallest first. Public.
    @strawberry.field
    async def plans(self, info: Info) -> list[Plan]:
        response = await info.context.call(
            "billing", "ListPlans", billing.ListPlansRequest(), billing.ListPlansResponse
        )
        return [Plan.of(p) for p in response.plans]

    # The business's subscription; members only. Never subscribed: the free plan.
    @strawberry.field
    async def subscription(self, info: Info, business_id: strawberry.ID) -> Subscription:
        return await get_subscription(info, business_id)

    # Usage of every meter this period; members only.
    @strawberry.field
    async def usage(self, info: Info, business_id: strawberry.ID) -> list[Usage]:
        response = await info.context.call(
            "billing",
            "GetUsage",
            billing.GetUsageRequest(business_id=business_id),
            billing.GetUsageResponse,
        )
        return [Usage.of(u) for u in response.usage]


@strawberry.type
class BillingMutation:
    # A Stripe Checkout page for upgrading to a paid plan (pro, business); owner or admin. Returns its
    # URL. The plan changes when Stripe reports the payment, not now.
    @strawberry.mutation
    async def start_checkout(
        self,
        info: Info,
        business_id: strawberry.ID,
        plan: str,
        success_url: str | None = None,
        cancel_url: str | None = None,
    ) -> str:
        response = await info.context.call(
            "billing",
            "StartCheckout",
            billing.StartCheckoutRequest(
                business_id=business_id, plan=plan, success_url=success_url or "", cancel_url=cancel_url or ""
            ),
            billing.StartCheckoutResponse,
        )
        return str(response.checkout_url)

    # A Stripe customer portal page (payment method, invoices); owner or admin.
    @strawberry.mutation
    async def billing_portal_url(
        self, info: Info, business_id: strawberry.ID, return_url: str | None = None
    ) -> str:
        response = await info.context.call(
            "billing",
            "GetPortalUrl",
            billing.GetPortalUrlRequest(business_id=business_id, return_url=return_url or ""),
            billing.GetPortalUrlResponse,
        )
        return str(response.url)

    # Cancels the paid subscription; owner or admin. atPeriodEnd keeps the plan until the paid period
    # ends; otherwise Stripe cancels now and the plan ends when its webhook arrives.
    @strawberry.mutation
    async def cancel_subscription(
        self, info: Info, business_id: strawberry.ID, at_period_end: bool = True
    ) -> Subscription:
        response = await info.context.call(
            "billing",
            "CancelSubscription",
            billing.CancelSubscriptionRequest(business_id=business_id, at_period_end=at_period_end),
            billing.CancelSubscriptionResponse,
        )
        return Subscription.of(response.subscription)
