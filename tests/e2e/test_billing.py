"""Billing through the real edge: a signed-up business on the free plan cannot add a second staff member;
Checkout (real stripe-mock) and Stripe's signed checkout.session.completed webhook, posted to the edge's
`/webhooks/stripe`, put it on Pro, after which it can. The same event three times has one effect; a forged
signature, a stale timestamp and a malformed body get 400 and change nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apptremind_billing.settings import BillingSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.stripe_mock import StripeMock
from apptremind_platform.webhook_signatures import stripe_signature_header
from tests.e2e.conftest import Platform, platform_running
from tests.e2e.test_signup_and_catalog import sign_up_owner
from tests.integration.billing.support import checkout_completed

SECRET = "whsec_e2e_billing"
CREATE_STAFF = "mutation($b: ID!, $n: String!) { createStaff(input: {businessId: $b, name: $n}) { id name } }"
SUBSCRIPTION = """query($b: ID!) { subscription(businessId: $b) {
  plan status cancelAtPeriodEnd entitlements { feature limit } } }"""
PLANS = "{ plans { id name priceMinor currency rank entitlements { feature limit } } }"
USAGE = "query($b: ID!) { usage(businessId: $b) { meter limit used reserved periodStart periodEnd } }"
START_CHECKOUT = 'mutation($b: ID!) { startCheckout(businessId: $b, plan: "pro") }'
PORTAL = "mutation($b: ID!) { billingPortalUrl(businessId: $b) }"
CANCEL = (
    "mutation($b: ID!) { cancelSubscription(businessId: $b, atPeriodEnd: true) { plan cancelAtPeriodEnd } }"
)


@pytest.fixture
def stripe_mock(workdir: Path) -> Iterator[StripeMock]:
    with StripeMock(log_file=workdir / "stripe-mock-e2e.log") as server:
        yield server


def billing_settings(stripe: StripeMock) -> BillingSettings:
    return BillingSettings(
        stripe_api_key="sk_test_e2e",
        stripe_api_base=stripe.base_url,
        stripe_webhook_secret=SECRET,
        stripe_price_pro="price_e2e_pro",
        stripe_price_business="price_e2e_business",
    )


async def post_webhook(
    platform: Platform, payload: bytes, *, secret: str = SECRET, signed_at: float | None = None
) -> tuple[int, Any]:
    timestamp = int(time.time() if signed_at is None else signed_at)
    response = await platform.client.post(
        "/webhooks/stripe",
        content=payload,
        headers={
            "content-type": "application/json",
            "Stripe-Signature": stripe_signature_header(secret, payload, timestamp),
        },
    )
    return response.status_code, response.json()


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    [error] = body["errors"]
    return error["extensions"]["code"], error["extensions"].get("reason", "")


def billing_state(platform: Platform, business_id: str) -> list[object]:
    db = platform.dbs["billing"]
    return [
        db.execute("SELECT * FROM subscription WHERE business_id = %s", (business_id,)),
        db.execute("SELECT count(*) FROM stripe_event"),
        db.execute("SELECT topic FROM outbox WHERE key = %s ORDER BY id", (business_id,)),
        platform.business_db.execute("SELECT count(*) FROM staff WHERE business_id = %s", (business_id,)),
    ]


async def test_upgrade_through_checkout_and_webhook_lifts_the_seat_limit(
    postgres: PostgresServer, kafka: KafkaBroker, stripe_mock: StripeMock
) -> None:
    async with platform_running(
        postgres,
        kafka,
        services=("auth", "business", "billing"),
        billing=billing_settings(stripe_mock),
        edge_stripe_webhook_secret=SECRET,
    ) as platform:
        owner = await sign_up_owner(platform, "billing-salon")
        token, business_id = owner["token"], owner["business_id"]

        plans = (await platform.ok(PLANS))["plans"]
        assert [p["id"] for p in plans] == ["free", "pro", "business"]
        free = (await platform.ok(SUBSCRIPTION, token, b=business_id))["subscription"]
        assert (free["plan"], free["status"]) == ("free", "FREE")
        assert {"feature": "staff_seats", "limit": 1} in free["entitlements"]
        usage = (await platform.ok(USAGE, token, b=business_id))["usage"]
        assert [(u["meter"], u["limit"], u["used"]) for u in usage] == [("sms", 10, 0)]

        # Free: one seat.
        await platform.ok(CREATE_STAFF, token, b=business_id, n="Ada")
        refused = await platform.gql(CREATE_STAFF, token, b=business_id, n="Bo")
        assert error_of(refused) == ("FAILED_PRECONDITION", "seat_limit_reached")

        url = (await platform.ok(START_CHECKOUT, token, b=business_id))["startCheckout"]
        assert url.startswith("https://checkout.stripe.com/")
        # Starting a checkout changes no plan.
        assert (await platform.ok(SUBSCRIPTION, token, b=business_id))["subscription"]["plan"] == "free"

        body = checkout_completed(business_id, "pro", "cus_e2e_1", "sub_e2e_1", dt.datetime.now(dt.UTC))
        payload = json.dumps(body).encode()
        before = billing_state(platform, business_id)

        # A forged signature, a stale timestamp and a signed but malformed body: 400, nothing changes.
        assert await post_webhook(platform, payload, secret="whsec_forged") == (
            400,
            {"error": "signature_mismatch"},
        )
        assert await post_webhook(platform, payload, signed_at=time.time() - 400) == (
            400,
            {"error": "timestamp_outside_tolerance"},
        )
        assert await post_webhook(platform, b'{"id": "evt_x", "type": "checkout.session.completed"}') == (
            400,
            {"error": "malformed_event"},
        )
        assert billing_state(platform, business_id) == before
        still = await platform.gql(CREATE_STAFF, token, b=business_id, n="Bo")
        assert error_of(still) == ("FAILED_PRECONDITION", "seat_limit_reached")

        # The real event, delivered three times: one effect.
        answers = [await post_webhook(platform, payload) for _ in range(3)]
        assert [(status, answer["event_id"], answer["duplicate"]) for status, answer in answers] == [
            (200, body["id"], False),
            (200, body["id"], True),
            (200, body["id"], True),
        ]
        pro = (await platform.ok(SUBSCRIPTION, token, b=business_id))["subscription"]
        assert (pro["plan"], pro["status"]) == ("pro", "ACTIVE")
        assert {"feature": "staff_seats", "limit": 5} in pro["entitlements"]
        billing_db = platform.dbs["billing"]
        assert billing_db.execute("SELECT count(*) FROM stripe_event WHERE event_id = %s", (body["id"],)) == [
            (1,)
        ]
        topics = [
            row[0] for row in billing_db.execute("SELECT topic FROM outbox WHERE key = %s", (business_id,))
        ]
        assert topics.count("billing.entitlements.changed.v1") == 1
        assert topics.count("billing.subscription.activated.v1") == 1

        # Pro: the second staff member is welcome now.
        added = await platform.ok(CREATE_STAFF, token, b=business_id, n="Bo")
        assert added["createStaff"]["name"] == "Bo"

        # The portal and cancellation go to Stripe (stripe-mock) for the customer the webhook recorded.
        portal = (await platform.ok(PORTAL, token, b=business_id))["billingPortalUrl"]
        assert portal.startswith("https://")
        cancelled = (await platform.ok(CANCEL, token, b=business_id))["cancelSubscription"]
        assert (cancelled["plan"], cancelled["cancelAtPeriodEnd"]) == ("pro", True)
        refused = await platform.gql(
            'mutation($b: ID!) { startCheckout(businessId: $b, plan: "free") }', token, b=business_id
        )
        assert error_of(refused) == ("BAD_USER_INPUT", "invalid_plan")
