"""Checkout, portal and cancellation through the official Stripe SDK against a real stripe-mock.

stripe-mock keeps no state and answers with canned objects, so these tests check that the service made
valid calls (stripe-mock validates every request against Stripe's OpenAPI spec) and used the answers.
"""

from __future__ import annotations

import grpc

from apptremind_gen.apptremind.billing import v1 as pb
from tests.integration.billing.support import Harness, Tenant, checkout_completed, expect_error


async def _checkout(
    h: Harness, t: Tenant, plan: str = "pro", metadata: list[tuple[str, str]] | None = None
) -> pb.StartCheckoutResponse:
    return await h.call(
        "StartCheckout",
        pb.StartCheckoutRequest(business_id=t.business_id, plan=plan, success_url="https://app.example/ok"),
        pb.StartCheckoutResponse,
        metadata if metadata is not None else t.owner,
    )


async def test_start_checkout_creates_a_customer_and_returns_the_session_url(harness: Harness) -> None:
    t = harness.tenant()
    started = await _checkout(harness, t)
    assert started.checkout_url.startswith("https://checkout.stripe.com/")
    assert started.checkout_session_id.startswith("cs_")
    [(customer,)] = harness.db.execute(
        "SELECT stripe_customer_id FROM subscription WHERE business_id = %s", (t.business_id,)
    )
    assert isinstance(customer, str) and customer.startswith("cus_")
    # The second checkout reuses the stored customer.
    await _checkout(harness, t, plan="business")
    assert harness.db.execute(
        "SELECT stripe_customer_id FROM subscription WHERE business_id = %s", (t.business_id,)
    ) == [(customer,)]
    # Starting a checkout changes no plan: only Stripe's webhook does.
    assert (await harness.subscription(t)).plan == "free"
    assert harness.topics(t.business_id) == []


async def test_checkout_is_for_managers_and_paid_plans(harness: Harness) -> None:
    t = harness.tenant()
    await expect_error(
        _checkout(harness, t, metadata=t.staff), grpc.StatusCode.PERMISSION_DENIED, "insufficient_role"
    )
    await expect_error(_checkout(harness, t, plan="free"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_plan")
    await expect_error(
        _checkout(harness, t, plan="platinum"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_plan"
    )
    await expect_error(
        harness.call(
            "StartCheckout",
            pb.StartCheckoutRequest(business_id=t.business_id, plan="pro", success_url="javascript:alert(1)"),
            pb.StartCheckoutResponse,
            t.owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_success_url",
    )
    assert harness.count("subscription", t.business_id) == 0


async def test_portal_url_needs_a_customer_and_comes_from_stripe(harness: Harness) -> None:
    t = harness.tenant()
    request = pb.GetPortalUrlRequest(business_id=t.business_id, return_url="https://app.example/billing")
    await expect_error(
        harness.call("GetPortalUrl", request, pb.GetPortalUrlResponse, t.owner),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no_billing_account",
    )
    await _checkout(harness, t)
    portal = await harness.call("GetPortalUrl", request, pb.GetPortalUrlResponse, t.owner)
    assert portal.url.startswith("https://") and "customer_portal" in portal.url
    await expect_error(
        harness.call("GetPortalUrl", request, pb.GetPortalUrlResponse, t.staff),
        grpc.StatusCode.PERMISSION_DENIED,
        "insufficient_role",
    )


async def test_cancel_at_period_end_and_a_subscriber_cannot_check_out_again(harness: Harness) -> None:
    t = harness.tenant()
    cancel = pb.CancelSubscriptionRequest(business_id=t.business_id, at_period_end=True)
    await expect_error(
        harness.call("CancelSubscription", cancel, pb.CancelSubscriptionResponse, t.owner),
        grpc.StatusCode.FAILED_PRECONDITION,
        "not_subscribed",
    )
    await harness.webhook(
        checkout_completed(t.business_id, "pro", "cus_cancel1", "sub_cancel1", harness.clock.now())
    )
    await expect_error(
        _checkout(harness, t, plan="business"), grpc.StatusCode.FAILED_PRECONDITION, "already_subscribed"
    )
    done = await harness.call("CancelSubscription", cancel, pb.CancelSubscriptionResponse, t.owner)
    assert done.subscription is not None
    assert (done.subscription.plan, done.subscription.cancel_at_period_end) == ("pro", True)
    updated = harness.events("billing.subscription.updated.v1", t.business_id)
    assert [u.subscription.cancel_at_period_end for u in updated] == [True]


async def test_immediate_cancel_asks_stripe_and_waits_for_its_webhook(harness: Harness) -> None:
    t = harness.tenant()
    await harness.webhook(
        checkout_completed(t.business_id, "pro", "cus_cancel2", "sub_cancel2", harness.clock.now())
    )
    cancel = pb.CancelSubscriptionRequest(business_id=t.business_id, at_period_end=False)
    await expect_error(
        harness.call("CancelSubscription", cancel, pb.CancelSubscriptionResponse, t.staff),
        grpc.StatusCode.PERMISSION_DENIED,
        "insufficient_role",
    )
    done = await harness.call("CancelSubscription", cancel, pb.CancelSubscriptionResponse, t.owner)
    # stripe-mock accepted the cancellation; the plan ends when customer.subscription.deleted arrives.
    assert done.subscription is not None
    assert (done.subscription.plan, done.subscription.cancel_at_period_end) == ("pro", False)
    assert harness.topics(t.business_id) == [
        "billing.subscription.activated.v1",
        "billing.entitlements.changed.v1",
    ]
