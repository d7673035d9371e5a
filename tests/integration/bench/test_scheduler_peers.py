"""The peer benchmark's own check, on demand (`pytest -m benchmark tests/integration/bench`): each peer does the
scheduler's workload on the session Postgres and Kafka and every job id reaches the topic exactly once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer

# The peers come with the `bench` dependency group only; without it this module is skipped, not broken.
pytest.importorskip("pgqueuer")
pytest.importorskip("procrastinate")

from tests.bench.scheduler_peers import (
    PeerResult,
    run_pgqueuer,
    run_pgqueuer_lateness,
    run_procrastinate,
    run_procrastinate_lateness,
)

pytestmark = pytest.mark.benchmark

JOBS = 200


def assert_exactly_once(result: PeerResult, jobs: int) -> None:
    assert result.jobs == jobs
    assert (result.duplicates, result.lost) == (0, 0), result
    assert result.seconds > 0


async def test_pgqueuer_publishes_every_due_job_once(postgres: PostgresServer, kafka: KafkaBroker) -> None:
    result = await run_pgqueuer(postgres.dsn(), kafka.bootstrap_servers, JOBS)
    assert result.name == "pgqueuer"
    assert_exactly_once(result, JOBS)


async def test_procrastinate_publishes_every_due_job_once(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    result = await run_procrastinate(postgres.dsn(), kafka.bootstrap_servers, JOBS)
    assert result.name == "procrastinate"
    assert_exactly_once(result, JOBS)


@pytest.mark.parametrize("run", [run_pgqueuer_lateness, run_procrastinate_lateness])
async def test_paced_run_measures_lateness_of_every_job(
    postgres: PostgresServer, kafka: KafkaBroker, run: Callable[..., Awaitable[PeerResult]]
) -> None:
    result = await run(postgres.dsn(), kafka.bootstrap_servers, rate_per_s=50, seconds=2)
    assert_exactly_once(result, 100)
    assert result.lateness_p50_ms is not None
    assert result.lateness_p99_ms is not None
    assert result.lateness_min_ms is not None
    assert result.lateness_max_ms is not None
    # Nothing may be published before it is due; 5 ms of slack because the due times come from Postgres'
    # clock and the ack times from the client's, read at different moments.
    assert (
        -5
        <= result.lateness_min_ms
        <= result.lateness_p50_ms
        <= result.lateness_p99_ms
        <= result.lateness_max_ms
    )
