"""Fixtures for the scheduler-service tests: one real service (real Postgres, real Kafka, real signed
tokens, its reminder consumer and its workers) shared by the tests, each test in businesses of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.topics import ensure_topics
from apptremind_scheduler.bootstrap import build_spec
from apptremind_scheduler.grpc import SERVICE
from tests.fixtures.kafka_io import warm_up_producer_ids
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.scheduler.support import Harness, fast_engine


@pytest.fixture(scope="package")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="package")
async def scheduler(
    postgres: PostgresServer, kafka: KafkaBroker, keys: SigningKeys
) -> AsyncIterator[Harness]:
    # It runs while this directory's tests do: one worker, polling gently.
    spec = build_spec(
        fast_engine(scheduler_workers=1, scheduler_idle_poll_s=0.2, scheduler_reclaim_interval_s=1.0)
    )
    db = database_for(postgres, spec)
    # A consumer group of its own starting at the end: other suites' reminder events on the shared broker
    # are not this service's to schedule.
    async with (
        running_service(
            spec,
            db,
            kafka,
            jwks=keys.jwks,
            consumer_group=f"scheduler-test-{uuid.uuid4().hex[:8]}",
            consumer_offset_reset="latest",
        ) as runtime,
        open_channel(f"127.0.0.1:{runtime.port}") as channel,
    ):
        await runtime.consumers_assigned()
        yield Harness(runtime, db, AsyncServiceClient(channel, SERVICE), keys, kafka.bootstrap_servers)


@pytest.fixture(scope="package")
def private_kafka(workdir: Path) -> Iterator[KafkaBroker]:
    """A broker only the worker tests write to: thousands of synthetic due events stay off the shared
    broker's scheduler.reminder.due.v1, which other suites consume."""
    broker = KafkaBroker(
        workdir / "kafka-scheduler",
        port=free_port(),
        controller_port=free_port(),
        log_file=workdir / "kafka-scheduler.log",
    )
    broker.start()
    ensure_topics(broker.bootstrap_servers)
    warm_up_producer_ids(broker.bootstrap_servers)
    yield broker
    broker.stop()
