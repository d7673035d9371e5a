"""Shared helpers for the billing-service tests: a harness around one running service, Stripe-shaped
webhook bodies signed exactly as Stripe signs them, outbox inspection and error assertions."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto2
import grpc
import grpc.aio
import pytest

from apptremind_gen.apptremind.billing import v1 as pb
from apptremind_platform.clock import SettableClock
from apptremind_platform.envelope import decode
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.service import ServiceRuntime
from apptremind_platform.webhook_signatures import stripe_signature_header
from tests.fixtures.db import ServiceDb
from tests.fixtures.tokens import SigningKeys

M = TypeVar("M", bound=betterproto2.Message)
Metadata = list[tuple[str, str]]

WEBHOOK_SECRET = "whsec_test_billing_secret"
PRICE_PRO = "price_test_pro"
PRICE_BUSINESS = "price_test_business"
# Every test starts here (a Monday in the middle of a billing month).
NOW = dt.datetime(2030, 6, 10, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Tenant:
    business_id: str
    owner: Metadata
    staff: Metadata


@dataclass
class Harness:
    runtime: ServiceRuntime
    db: ServiceDb
    client: AsyncServiceClient
    keys: SigningKeys
    clock: SettableClock
    stripe_base_url: str

    def metadata(self, user_id: str, memberships: dict[str, str]) -> Metadata:
        return list(self.keys.caller(user_id, memberships).to_metadata())

    def tenant(self) -> Tenant:
        bid = str(uuid.uuid4())
        return Tenant(
            bid,
            self.metadata(str(uuid.uuid4()), {bid: "owner"}),
            self.metadata(str(uuid.uuid4()), {bid: "staff"}),
        )

    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[M],
        metadata: Metadata | None = None,
    ) -> M:
        return await self.client.call(method, request, response_type, metadata=metadata, timeout=30)

    async def subscription(self, tenant: Tenant) -> pb.Subscription:
        response = await self.call(
            "GetSubscription",
            pb.GetSubscriptionRequest(business_id=tenant.business_id),
            pb.GetSubscriptionResponse,
            tenant.owner,
        )
        assert response.subscription is not None
        return response.subscription

    async def webhook(
        self,
        body: dict[str, Any] | bytes,
        *,
        secret: str = WEBHOOK_SECRET,
        signed_at: dt.datetime | None = None,
    ) -> pb.HandleStripeWebhookResponse:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        timestamp = int((signed_at or self.clock.now()).timestamp())
        return await self.call(
            "HandleStripeWebhook",
            pb.HandleStripeWebhookRequest(
                payload=payload, signature=stripe_signature_header(secret, payload, timestamp)
            ),
            pb.HandleStripeWebhookResponse,
        )

    def events(self, topic: str, business_id: str) -> list[Any]:
        """The payloads of the outbox rows of `topic` for one business, in commit order."""
        rows = self.db.execute(
            "SELECT payload FROM outbox WHERE topic = %s AND key = %s ORDER BY id", (topic, business_id)
        )
        return [decode(topic, bytes(row[0])).data for row in rows]  # type: ignore[arg-type]

    def topics(self, business_id: str) -> list[str]:
        rows = self.db.execute("SELECT topic FROM outbox WHERE key = %s ORDER BY id", (business_id,))
        return [str(row[0]) for row in rows]

    def count(self, table: str, business_id: str) -> int:
        [(n,)] = self.db.execute(f"SELECT count(*) FROM {table} WHERE business_id = %s", (business_id,))
        assert isinstance(n, int)
        return n


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (code, reason), info.value.details()


def event(
    event_type: str, obj: dict[str, Any], created: dt.datetime, event_id: str | None = None
) -> dict[str, Any]:
    """A webhook body shaped like Stripe's (API version 2024-06-20 fields plus what newer ones moved)."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(created.timestamp()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def checkout_completed(
    business_id: str, plan: str, customer: str, subscription: str, created: dt.datetime
) -> dict[str, Any]:
    return event(
        "checkout.session.completed",
        {
            "id": f"cs_test_{uuid.uuid4().hex[:16]}",
            "object": "checkout.session",
            "client_reference_id": business_id,
            "customer": customer,
            "subscription": subscription,
            "mode": "subscription",
            "payment_status": "paid",
            "status": "complete",
            "metadata": {"business_id": business_id, "plan": plan},
        },
        created,
    )


def subscription_object(
    subscription: str,
    customer: str,
    status: str,
    price: str,
    period_end: dt.datetime,
    metadata: dict[str, str],
) -> dict[str, Any]:
    return {
        "id": subscription,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "current_period_end": int(period_end.timestamp()),
        "items": {
            "object": "list",
            "data": [
                {"id": "si_test", "object": "subscription_item", "price": {"id": price, "object": "price"}}
            ],
        },
        "metadata": metadata,
    }


def invoice(event_type: str, subscription: str, customer: str, created: dt.datetime) -> dict[str, Any]:
    return event(
        event_type,
        {
            "id": f"in_test_{uuid.uuid4().hex[:16]}",
            "object": "invoice",
            "customer": customer,
            "subscription": subscription,
            "status": "paid" if event_type == "invoice.paid" else "open",
        },
        created,
    )
