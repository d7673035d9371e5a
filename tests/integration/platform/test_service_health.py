"""A real service process: gRPC health follows its database and Kafka, reflection lists its services,
SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port, wait_for_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_scheduler.bootstrap import SPEC
from tests.fixtures.db import make_service_db

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_postgres(workdir: Path) -> Iterator[PostgresServer]:
    # Under the session's workdir, not pytest's tmp root: a pytest session starting meanwhile resets that
    # root to mode 0700 and would lock Postgres (it runs as its own user) out of its data directory.
    server = PostgresServer(workdir / f"pg-health-{uuid.uuid4().hex[:8]}", port=free_port(), durable=False)
    server.start()
    yield server
    server.stop()


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_health_follows_database_and_kafka(
    own_postgres: PostgresServer, tmp_path: Path, repo_root: Path
) -> None:
    db = make_service_db(own_postgres, "scheduler", SPEC.sql_dir)
    broker = KafkaBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    grpc_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "APPTREMIND_DATABASE_URL": db.dsn,
        "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "APPTREMIND_GRPC_PORT": str(grpc_port),
        "APPTREMIND_HTTP_PORT": str(http_port),
        "APPTREMIND_READINESS_INTERVAL_S": "0.3",
    }
    own_postgres.stop()
    log = tmp_path / "service.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "apptremind_scheduler.bootstrap"],
        cwd=repo_root,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status() -> int:
        # The deadline is not under test: a just-started process on a loaded machine may answer slowly.
        return int(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)

    def checks() -> dict[str, bool]:
        """The readiness checks' results, from the side port's /readyz (503 while not ready)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            body = err.read()
        except OSError:
            return {}
        return dict(json.loads(body)["checks"])

    try:
        wait_for_port("127.0.0.1", grpc_port, 60)
        # Neither the database nor Kafka is up.
        assert status() == NOT_SERVING
        reflection = ProtoReflectionDescriptorDatabase(channel)
        services = set(reflection.get_services())
        assert {"apptremind.scheduler.v1.SchedulerService", "grpc.health.v1.Health"} <= services
        method = reflection.FindFileContainingSymbol("apptremind.scheduler.v1.SchedulerService")
        assert method.package == "apptremind.scheduler.v1"

        own_postgres.start()
        # Once the database check passes again (the pool reconnects in its own time), the health watch gets
        # two rounds with only the database up; a round lasts the Kafka probe's 2 s timeout plus the 0.3 s
        # interval, so a bare 1 s sleep could end before the watch saw the database at all.
        wait_for(lambda: checks() == {"db": True, "kafka": False}, "the database check passing alone")
        time.sleep(5.0)
        assert status() == NOT_SERVING

        broker.start()
        wait_for(lambda: status() == SERVING, "SERVING once database and Kafka are up")

        own_postgres.kill()
        wait_for(lambda: status() == NOT_SERVING, "NOT_SERVING after the database is lost")
        own_postgres.start()
        wait_for(lambda: status() == SERVING, "SERVING after the database is back")

        broker.stop()
        wait_for(lambda: status() == NOT_SERVING, "NOT_SERVING after Kafka is lost")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if broker.pid is not None:
            broker.stop()
