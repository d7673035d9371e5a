"""Fixtures for the business-service tests: one real service (real Postgres, real Kafka, real signed
tokens) shared by the RPC tests, each test working in businesses of its own. The staff-seat limit is
billing-service's answer, so a real billing-service runs next to it; businesses get their plan from a
signed Stripe checkout webhook, as in production."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from apptremind_billing.bootstrap import build_spec as build_billing_spec
from apptremind_billing.grpc import SERVICE as BILLING_SERVICE
from apptremind_billing.settings import BillingSettings
from apptremind_business.bootstrap import SPEC
from apptremind_business.grpc import SERVICE
from apptremind_business.settings import BusinessSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.service import ServiceRuntime
from tests.fixtures.services import database_for, running_service, settings_for
from tests.fixtures.tokens import SigningKeys
from tests.integration.business.support import BILLING_WEBHOOK_SECRET, Billing, Harness

# The RPC tests run the service without its Kafka consumer: nothing but the calls under test may write to
# the database while a test compares snapshots. The saga tests run the full SPEC.
RPC_SPEC = dataclasses.replace(SPEC, processors=())


@pytest.fixture(scope="package")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="package")
async def billing(postgres: PostgresServer, kafka: KafkaBroker, keys: SigningKeys) -> AsyncIterator[Billing]:
    # Webhooks only: no Stripe API call is made, so no Stripe (mock) is needed. Nor its settlement consumer,
    # deposit settler or housekeeping: as a member of the shared "billing" consumer group it would take
    # partitions of booking's settlement requests from any other billing-service running at the same time.
    spec = dataclasses.replace(
        build_billing_spec(billing=BillingSettings(stripe_webhook_secret=BILLING_WEBHOOK_SECRET)),
        processors=(),
        background=(),
    )
    db = database_for(postgres, spec)
    async with (
        running_service(spec, db, kafka, jwks=keys.jwks) as runtime,
        open_channel(f"127.0.0.1:{runtime.port}") as channel,
    ):
        yield Billing(runtime, AsyncServiceClient(channel, BILLING_SERVICE))


@pytest.fixture(scope="package")
async def harness(
    postgres: PostgresServer, kafka: KafkaBroker, keys: SigningKeys, billing: Billing
) -> AsyncIterator[Harness]:
    db = database_for(postgres, SPEC)
    base = settings_for(RPC_SPEC, db, kafka)
    settings = BusinessSettings(**base.model_dump(), billing_target=f"127.0.0.1:{billing.runtime.port}")
    runtime = ServiceRuntime(RPC_SPEC, settings, jwks=keys.jwks)
    await runtime.start()
    try:
        async with open_channel(f"127.0.0.1:{runtime.port}") as channel:
            yield Harness(runtime, db, AsyncServiceClient(channel, SERVICE), keys, billing)
    finally:
        await runtime.stop(0)
