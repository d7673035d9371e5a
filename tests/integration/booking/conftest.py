"""Fixtures for the booking-service tests: one real service (real Postgres, real Kafka, real signed tokens,
a settable clock) shared by the tests, each test working in businesses of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from apptremind_booking.bootstrap import build_spec
from apptremind_booking.grpc import SERVICE
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.clock import SettableClock
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.booking.support import NOW, TOKEN_SECRET, Harness


@pytest.fixture(scope="package")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="package")
async def booking(postgres: PostgresServer, kafka: KafkaBroker, keys: SigningKeys) -> AsyncIterator[Harness]:
    clock = SettableClock(NOW)
    spec = build_spec(clock=clock, token_secret=TOKEN_SECRET)
    db = database_for(postgres, spec)
    # The read model is fed by calling the real processor with real encoded events, so the RPC tests run
    # without the Kafka consumer; test_kafka_read_model runs the full spec.
    rpc_spec = dataclasses.replace(spec, processors=())
    async with (
        running_service(rpc_spec, db, kafka, jwks=keys.jwks, db_pool_max=20) as runtime,
        open_channel(f"127.0.0.1:{runtime.port}") as channel,
    ):
        yield Harness(runtime, db, AsyncServiceClient(channel, SERVICE), keys, clock, spec)


@pytest.fixture
def harness(booking: Harness) -> Harness:
    booking.clock.set(NOW)
    return booking
