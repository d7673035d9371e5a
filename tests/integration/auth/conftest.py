"""Fixtures of the auth-service tests: a freshly started auth-service per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from tests.integration.auth.harness import Auth, started_auth


@pytest.fixture
async def auth(postgres: PostgresServer, kafka: KafkaBroker) -> AsyncIterator[Auth]:
    async with started_auth(postgres, kafka) as started:
        yield started
