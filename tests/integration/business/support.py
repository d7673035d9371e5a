"""Shared helpers for the business-service tests: a harness around one running service (and the billing-service
it asks for staff seats), signups through the real saga handler, plans bought through signed Stripe webhooks,
error assertions, and database snapshots that prove a refused call wrote nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto2
import grpc
import grpc.aio
import pytest

from apptremind_business import service as business_service
from apptremind_business.bootstrap import SPEC
from apptremind_gen.apptremind.auth.v1 import BusinessDraft
from apptremind_gen.apptremind.billing import v1 as billing_pb
from apptremind_gen.apptremind.business import v1 as pb
from apptremind_gen.apptremind.events.auth.v1 import UserCreated
from apptremind_platform.envelope import Event, decode, encode, headers_for
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.processing import Incoming, Outcome
from apptremind_platform.service import ServiceRuntime
from apptremind_platform.webhook_signatures import stripe_signature_header
from tests.fixtures.db import ServiceDb
from tests.fixtures.tokens import SigningKeys

USER_CREATED = "auth.user.created.v1"
BILLING_WEBHOOK_SECRET = "whsec_test_business_seats"
M = TypeVar("M", bound=betterproto2.Message)
Metadata = list[tuple[str, str]]

# Every table the service writes, the platform's included: a refused call must leave all of them as they were.
TABLES = (
    "business",
    "staff",
    "working_hours",
    "date_override",
    "service",
    "service_staff",
    "reminder_policy",
    "outbox",
    "inbox",
)


def user_created(
    user_id: str,
    slug: str | None,
    *,
    name: str = "Hair by Ana",
    time_zone: str = "Europe/Berlin",
    locale: str = "en-US",
    currency: str = "EUR",
    key: str = "",
) -> Event:
    """auth.user.created.v1 as auth-service emits it; slug None: an invited user, no business draft."""
    draft = (
        BusinessDraft(name=name, slug=slug, time_zone=time_zone, locale=locale, currency=currency)
        if slug is not None
        else None
    )
    return Event(
        USER_CREATED,
        key or user_id,
        UserCreated(user_id=user_id, email=f"{user_id[:8]}@example.com", business=draft),
        subject=user_id,
    )


def incoming(event: Event, offset: int = 0) -> Incoming:
    """The record a consumer would receive for `event`, headers included."""
    headers = [(k, v.encode()) for k, v in headers_for(event).items()]
    return Incoming(
        USER_CREATED, 0, offset, event.business_id.encode(), encode(event, source="auth"), headers=headers
    )


def unique_slug(prefix: str = "shop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Tenant:
    business_id: str
    owner_user_id: str
    slug: str
    owner: Metadata


@dataclass
class Billing:
    """The real billing-service the business-service asks for staff seats."""

    runtime: ServiceRuntime
    client: AsyncServiceClient

    async def buy(self, business_id: str, plan: str) -> None:
        """Puts the business on `plan` the way Stripe does: a signed checkout.session.completed webhook."""
        payload = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "created": int(time.time()),
                "type": "checkout.session.completed",
                "data": {
                    "object": {
                        "id": f"cs_test_{uuid.uuid4().hex[:16]}",
                        "object": "checkout.session",
                        "client_reference_id": business_id,
                        "customer": f"cus_{uuid.uuid4().hex[:14]}",
                        "subscription": f"sub_{uuid.uuid4().hex[:14]}",
                        "mode": "subscription",
                        "payment_status": "paid",
                        "status": "complete",
                        "metadata": {"business_id": business_id, "plan": plan},
                    }
                },
            }
        ).encode()
        signature = stripe_signature_header(BILLING_WEBHOOK_SECRET, payload, int(time.time()))
        done = await self.client.call(
            "HandleStripeWebhook",
            billing_pb.HandleStripeWebhookRequest(payload=payload, signature=signature),
            billing_pb.HandleStripeWebhookResponse,
            timeout=10,
        )
        assert done.applied, done


@dataclass
class Harness:
    runtime: ServiceRuntime
    db: ServiceDb
    client: AsyncServiceClient
    keys: SigningKeys
    billing: Billing

    def metadata(self, user_id: str, memberships: dict[str, str]) -> Metadata:
        return list(self.keys.caller(user_id, memberships).to_metadata())

    async def signup(self, slug: str | None = None, *, plan: str = "business", **draft: Any) -> Tenant:
        """A business created the way production creates it: the saga handler on auth.user.created.v1.

        It is then put on `plan` ("business": unlimited staff seats, so tests about other things are not
        limited by seats); "free" leaves it on the free plan (one staff seat).
        """
        assert self.runtime.pool is not None
        processor = SPEC.processors[0](self.runtime.pool, self.runtime.settings)
        user_id = str(uuid.uuid4())
        slug = slug or unique_slug()
        outcome = await processor.process(incoming(user_created(user_id, slug, **draft)))
        assert outcome is Outcome.PROCESSED
        business_id = str(business_service.signup_business_id(uuid.UUID(user_id)))
        (got_slug,) = self.db.execute("SELECT slug FROM business WHERE business_id = %s", (business_id,))[0]
        if plan != "free":
            await self.billing.buy(business_id, plan)
        return Tenant(business_id, user_id, str(got_slug), self.metadata(user_id, {business_id: "owner"}))

    async def call(
        self, method: str, request: betterproto2.Message, response_type: type[M], metadata: Metadata | None
    ) -> M:
        return await self.client.call(method, request, response_type, metadata=metadata, timeout=10)

    async def add_staff(self, tenant: Tenant, name: str = "Sam") -> str:
        response = await self.call(
            "CreateStaff",
            pb.CreateStaffRequest(business_id=tenant.business_id, name=name),
            pb.CreateStaffResponse,
            tenant.owner,
        )
        assert response.staff is not None
        return str(response.staff.staff_id)

    async def add_service(self, tenant: Tenant, staff_ids: list[str], name: str = "Cut") -> str:
        response = await self.call(
            "CreateService",
            pb.CreateServiceRequest(
                business_id=tenant.business_id,
                name=name,
                duration_minutes=30,
                price_minor=2500,
                staff_ids=staff_ids,
            ),
            pb.CreateServiceResponse,
            tenant.owner,
        )
        assert response.service is not None
        return str(response.service.service_id)

    def snapshot(self) -> dict[str, str]:
        """Per table, the row count and a digest of every row (one query, one connection)."""
        digests = ", ".join(
            f"(SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
            f"FROM {table} t)"
            for table in TABLES
        )
        [row] = self.db.execute(f"SELECT {digests}")
        return dict(zip(TABLES, (str(v) for v in row), strict=True))

    def events(self, topic: str, business_id: str) -> list[Any]:
        """The payloads of the outbox rows of `topic` for one business, in commit order."""
        rows = self.db.execute(
            "SELECT payload FROM outbox WHERE topic = %s AND key = %s ORDER BY id", (topic, business_id)
        )
        payloads = [row[0] for row in rows]
        assert all(isinstance(p, bytes) for p in payloads)
        return [decode(topic, p).data for p in payloads if isinstance(p, bytes)]


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (code, reason), info.value.details()


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2030, 3, day, hour, tzinfo=dt.UTC)
