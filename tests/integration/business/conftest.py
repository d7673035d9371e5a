"""Fixtures for the business-service tests: one real service (real Postgres, real Kafka, real signed
tokens) shared by the RPC tests, each test working in businesses of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from apptremind_business.bootstrap import SPEC
from apptremind_business.grpc import SERVICE
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.business.support import Harness

# The RPC tests run the service without its Kafka consumer: nothing but the calls under test may write to
# the database while a test compares snapshots. The saga tests run the full SPEC.
RPC_SPEC = dataclasses.replace(SPEC, processors=())


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def harness(postgres: PostgresServer, kafka: KafkaBroker, keys: SigningKeys) -> AsyncIterator[Harness]:
    db = database_for(postgres, SPEC)
    async with (
        running_service(RPC_SPEC, db, kafka, jwks=keys.jwks) as runtime,
        open_channel(f"127.0.0.1:{runtime.port}") as channel,
    ):
        yield Harness(runtime, db, AsyncServiceClient(channel, SERVICE), keys)
