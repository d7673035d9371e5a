"""Session fixtures: a throwaway real Postgres and a real Kafka broker on free ports, shared by all
integration tests and torn down at the end. Never the `make up` ports."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.db import open_pool
from apptremind_platform.topics import ensure_topics
from tests.fixtures.db import ServiceDb, make_service_db
from tests.fixtures.kafka_io import warm_up_producer_ids


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="apptremind-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / "pg", port=free_port(), log_file=workdir / "pg.log", durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(workdir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(
        workdir / "kafka", port=free_port(), controller_port=free_port(), log_file=workdir / "kafka.log"
    )
    broker.start()
    ensure_topics(broker.bootstrap_servers)
    warm_up_producer_ids(broker.bootstrap_servers)
    yield broker
    broker.stop()


@pytest.fixture
def service_db(postgres: PostgresServer) -> ServiceDb:
    """A fresh database with the platform tables, as its own service with its own roles."""
    return make_service_db(postgres, "t" + uuid.uuid4().hex[:12])


@pytest.fixture
async def pool(service_db: ServiceDb) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(service_db.dsn, min_size=1, max_size=4)
    await p.wait()
    yield p
    await p.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _no_stack_ports() -> None:
    # The suite must never touch a running `make up` stack.
    os.environ.pop("APPTREMIND_DATABASE_URL", None)
