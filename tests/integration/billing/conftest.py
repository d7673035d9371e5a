"""Fixtures for the billing-service tests: one real service (real Postgres, real Kafka, real signed tokens,
a settable clock) talking to a real stripe-mock, shared by the tests; each test uses businesses of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from apptremind_billing.bootstrap import build_spec
from apptremind_billing.grpc import SERVICE
from apptremind_billing.settings import BillingSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.stripe_mock import StripeMock
from apptremind_platform.clock import SettableClock
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.billing.support import NOW, PRICE_BUSINESS, PRICE_PRO, WEBHOOK_SECRET, Harness

GRACE_S = 3 * 24 * 3600


@pytest.fixture(scope="session")
def stripe_mock(workdir: Path) -> Iterator[StripeMock]:
    with StripeMock(log_file=workdir / "stripe-mock.log") as server:
        yield server


@pytest.fixture(scope="session")
def billing_keys() -> SigningKeys:
    return SigningKeys()


# Package scope: its settler and housekeeping run every 0.1-0.2 s, which the suites after billing's need not
# carry for the rest of the session.
@pytest.fixture(scope="package")
async def billing(
    postgres: PostgresServer, kafka: KafkaBroker, stripe_mock: StripeMock, billing_keys: SigningKeys
) -> AsyncIterator[Harness]:
    clock = SettableClock(NOW)
    settings = BillingSettings(
        stripe_api_key="sk_test_123",
        stripe_api_base=stripe_mock.base_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_price_pro=PRICE_PRO,
        stripe_price_business=PRICE_BUSINESS,
        billing_grace_period_s=GRACE_S,
        billing_housekeeping_interval_s=0.2,
        billing_settle_interval_s=0.1,
    )
    spec = build_spec(clock=clock, billing=settings)
    db = database_for(postgres, spec)
    # A consumer group of its own starting at the end (as scheduler's tests do): the shared "billing" group
    # may have other members (business's and notification's billing-services), and a partition of the
    # settlement topic assigned to one of them would take a test's settlement request to another database;
    # other suites' settlement requests on the shared broker are not this service's either.
    # consumers_assigned() below pins the start, so every request a test publishes afterwards is seen.
    async with (
        running_service(
            spec,
            db,
            kafka,
            jwks=billing_keys.jwks,
            db_pool_max=20,
            consumer_group=f"billing-test-{uuid.uuid4().hex[:8]}",
            consumer_offset_reset="latest",
        ) as runtime,
        open_channel(f"127.0.0.1:{runtime.port}") as channel,
    ):
        await runtime.consumers_assigned()
        yield Harness(
            runtime, db, AsyncServiceClient(channel, SERVICE), billing_keys, clock, stripe_mock.base_url
        )


@pytest.fixture
def harness(billing: Harness) -> Harness:
    billing.clock.set(NOW)
    return billing
