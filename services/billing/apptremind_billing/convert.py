"""Domain values to protobuf messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apptremind_gen.apptremind.billing import v1 as pb

if TYPE_CHECKING:
    from .subscriptions import SubscriptionState

_STATUS = {
    "free": pb.SubscriptionStatus.FREE,
    "active": pb.SubscriptionStatus.ACTIVE,
    "trialing": pb.SubscriptionStatus.TRIALING,
    "past_due": pb.SubscriptionStatus.PAST_DUE,
    "canceled": pb.SubscriptionStatus.CANCELED,
    "incomplete": pb.SubscriptionStatus.INCOMPLETE,
}
RESERVATION_STATUS = {
    "reserved": pb.ReservationStatus.RESERVED,
    "committed": pb.ReservationStatus.COMMITTED,
    "released": pb.ReservationStatus.RELEASED,
    "expired": pb.ReservationStatus.EXPIRED,
}


def subscription(state: SubscriptionState, limits: dict[str, int]) -> pb.Subscription:
    return pb.Subscription(
        business_id=str(state.business_id),
        plan=state.plan_id,
        status=_STATUS[state.status],
        stripe_customer_id=state.stripe_customer_id or "",
        stripe_subscription_id=state.stripe_subscription_id or "",
        current_period_end=state.current_period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        grace_until=state.grace_until,
        entitlements=dict(limits),
        updated_at=state.updated_at,
    )
