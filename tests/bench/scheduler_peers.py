"""The scheduler's workload run by two Python peers, pgqueuer and procrastinate, so their numbers can stand next
to ours: same Postgres, same Kafka, same work per job.

Per peer, in a fresh database holding the peer's own durable (logged) tables:

* throughput: N jobs, already due, are bulk-enqueued (not timed); then the peer's worker dequeues each one,
  publishes one ~200 byte message keyed by the peer's job id through ONE shared aiokafka producer
  (acks=all, idempotent, linger 5 ms), awaits the ack, and the job completes in the peer's tables. The clock
  stops when every job is acked and the worker has recorded every completion.
* lateness: jobs scheduled at `rate_per_s` for `seconds` with the peer's own delayed-job feature (pgqueuer
  `execute_after`, procrastinate `scheduled_at`); lateness = ack time - scheduled time.

Every run reads the topic back and counts duplicated and lost job ids. The tuning used for each peer, and
where its docs advise it, is in docs/bench-peers.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import math
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer
from pgqueuer import Job, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.jobs import Job as ProcrastinateJob

from tests.fixtures.kafka_io import create_topic

PAYLOAD_BYTES = 200
LINGER_MS = 5
TOPIC_PARTITIONS = 3
ENQUEUE_CHUNK = 5_000


@dataclass(frozen=True)
class PgQueuerTuning:
    """pgqueuer docs, guides/performance-tuning and development/benchmark: asyncpg, one dedicated connection
    per QueueManager, several managers, batch_size raised for short jobs, `pgq autovac` applied."""

    managers: int = 2
    batch_size: int = 100
    max_concurrent_tasks: int | None = None
    # Only the fallback poll: new and due jobs wake the manager through NOTIFY / the deferred-job ETA.
    dequeue_timeout: timedelta = timedelta(seconds=5)

    def describe(self) -> str:
        cap = self.max_concurrent_tasks or "unlimited"
        return (
            f"asyncpg driver, {self.managers} QueueManagers each on its own connection, "
            f"batch_size {self.batch_size}, max_concurrent_tasks {cap}, durability durable, autovac applied"
        )


@dataclass(frozen=True)
class ProcrastinateTuning:
    """procrastinate docs, howto/concurrency and howto/production/delete_finished_jobs: async tasks with worker
    concurrency, the psycopg async connector, listen_notify, finished jobs deleted on completion."""

    workers: int = 8
    concurrency: int = 25
    pool_size: int = 30
    listen_notify: bool = True
    # Scheduled jobs are found by polling (NOTIFY fires at insert, not when a job falls due).
    fetch_job_polling_interval: float = 0.1
    delete_jobs: str = "successful"

    def describe(self) -> str:
        return (
            f"PsycopgConnector (pool {self.pool_size}), {self.workers} worker(s) x concurrency "
            f"{self.concurrency}, listen_notify {'on' if self.listen_notify else 'off'}, "
            f"fetch_job_polling_interval {self.fetch_job_polling_interval:g} s, delete_jobs={self.delete_jobs}"
        )


@dataclass(frozen=True)
class PeerResult:
    name: str
    version: str
    jobs: int
    seconds: float
    jobs_per_s: float
    duplicates: int
    lost: int
    tuning: str
    lateness_p50_ms: float | None = None
    lateness_p99_ms: float | None = None
    lateness_max_ms: float | None = None
    lateness_min_ms: float | None = None
    # Paced runs: the rate jobs fell due at; jobs_per_s is then what the peer kept up with.
    offered_per_s: int | None = None

    @property
    def exactly_once(self) -> bool:
        return self.duplicates == 0 and self.lost == 0


@dataclass
class Acks:
    """Ack times of the published job ids, from the one shared producer."""

    expected: int
    at: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, key: str) -> None:
        # A second ack for the same id keeps the first time; the read-back counts it as a duplicate.
        self.at.setdefault(key, time.time())
        if len(self.at) >= self.expected:
            self.done.set()


class Publisher:
    """What a peer's job does: one message keyed by the job id, awaited until Kafka acknowledges it."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, acks: Acks) -> None:
        self.producer = producer
        self.topic = topic
        self.acks = acks

    async def publish(self, key: str, value: bytes) -> None:
        await self.producer.send_and_wait(self.topic, value, key=key.encode())
        self.acks.record(key)


def message_value(n: int) -> bytes:
    head = f'{{"job":{n},"kind":"reminder.due","pad":"'.encode()
    return head + b"x" * (PAYLOAD_BYTES - len(head) - 2) + b'"}'


def version_of(package: str) -> str:
    return importlib.metadata.version(package)


# -- shared plumbing -------------------------------------------------------------------------------------------


def _with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@asynccontextmanager
async def fresh_database(pg_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new database on the given server for one run, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield _with_dbname(pg_dsn, name)
    finally:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


async def unlogged_tables(dsn: str, prefix: str) -> list[str]:
    """Names of the peer's tables that are not WAL-logged; the comparison needs durable tables only."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s AND relpersistence <> 'p'",
            (f"{prefix}%",),
        )
        return [str(row[0]) for row in await cur.fetchall()]


async def analyze(dsn: str) -> None:
    """Fresh planner statistics after the bulk enqueue, as autovacuum keeps them in steady state: without
    them the planner misjudges a just-filled queue table and each dequeue sorts the whole backlog."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ANALYZE")


async def new_topic(bootstrap_servers: str, peer: str) -> str:
    topic = f"bench.peer.{peer}.{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(create_topic, bootstrap_servers, topic, TOPIC_PARTITIONS)
    return topic


@asynccontextmanager
async def shared_producer(bootstrap_servers: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        client_id="bench-peer",
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def read_keys(bootstrap_servers: str, topic: str, expected: int, timeout_s: float = 120.0) -> Counter[str]:
    """Every key on the topic, read from the beginning until `expected` are in and nothing more arrives."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"bench-peer-check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    keys: Counter[str] = Counter()
    seen = 0
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, 0.5)
            records = [m for m in batch if not m.error()]
            for msg in records:
                keys[(msg.key() or b"").decode()] += 1
            seen += len(records)
            if records:
                quiet_since = None
            elif seen >= expected:
                # Settle a little so duplicates landing after the last expected record are counted too.
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.0:
                    break
    finally:
        consumer.close()
    return keys


async def verify(bootstrap_servers: str, topic: str, expected: Sequence[str]) -> tuple[int, int]:
    """(duplicates, lost) for the job ids that had to appear exactly once."""
    keys = await asyncio.to_thread(read_keys, bootstrap_servers, topic, len(expected))
    wanted = set(expected)
    duplicates = sum(n - 1 for n in keys.values() if n > 1) + sum(
        n for k, n in keys.items() if k not in wanted
    )
    lost = sum(1 for k in wanted if keys[k] == 0)
    return duplicates, lost


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Schedule:
    """Per job id, the epoch second it is due (paced runs only)."""

    due: dict[str, float]

    def lateness_ms(self, acks: Acks) -> list[float]:
        return [(acks.at[k] - due) * 1000 for k, due in self.due.items() if k in acks.at]


def _result(
    name: str,
    version: str,
    jobs: int,
    seconds: float,
    checked: tuple[int, int],
    tuning: str,
    lateness: list[float] | None = None,
    offered_per_s: int | None = None,
) -> PeerResult:
    duplicates, lost = checked
    return PeerResult(
        name=name,
        version=version,
        jobs=jobs,
        seconds=seconds,
        jobs_per_s=jobs / seconds if seconds > 0 else 0.0,
        duplicates=duplicates,
        lost=lost,
        tuning=tuning,
        lateness_p50_ms=statistics.median(lateness) if lateness else None,
        lateness_p99_ms=percentile(lateness, 0.99) if lateness else None,
        lateness_max_ms=max(lateness) if lateness else None,
        lateness_min_ms=min(lateness) if lateness else None,
        offered_per_s=offered_per_s,
    )


async def _until_acked(
    acks: Acks, worker: Awaitable[object], stop: Callable[[], None] | None, timeout_s: float
) -> None:
    """Runs the worker until every job is acked and its completion recorded. A drained worker (`stop` None)
    exits by itself once the queue is empty; a waiting one is stopped after the last ack."""
    task = asyncio.ensure_future(worker)
    waiter = asyncio.ensure_future(acks.done.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"only {len(acks.at)} of {acks.expected} jobs acked after {timeout_s}s")
        if task in done:
            task.result()  # a worker that died must fail the run, not hang it
            if not acks.done.is_set():
                raise RuntimeError(f"worker stopped with {len(acks.at)} of {acks.expected} jobs acked")
        if stop is not None:
            stop()
        await asyncio.wait({task}, timeout=60)
        if not task.done():
            raise TimeoutError("worker did not finish after the last ack")
        if stop is None or not (task.cancelled() or isinstance(task.exception(), asyncio.CancelledError)):
            task.result()
    finally:
        for pending in (task, waiter):
            if not pending.done():
                pending.cancel()


# -- pgqueuer --------------------------------------------------------------------------------------------------

PGQ_ENTRYPOINT = "publish_due"


async def _pgqueuer_install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(conn)
        await queries.install()
        await queries.optimize_autovacuum()
    finally:
        await conn.close()


async def _pgqueuer_enqueue(dsn: str, jobs: int, due_at: Callable[[int], float] | None) -> dict[str, float]:
    """Bulk-enqueues `jobs` (due now, or at `due_at(n)` epoch seconds); returns job id -> due time."""
    conn = await asyncpg.connect(dsn)
    due: dict[str, float] = {}
    try:
        queries = Queries.from_asyncpg_connection(conn)
        for start in range(0, jobs, ENQUEUE_CHUNK):
            ns = range(start, min(jobs, start + ENQUEUE_CHUNK))
            now = time.time()
            after = [timedelta(seconds=max(0.0, due_at(n) - now)) if due_at else None for n in ns]
            ids = await queries.enqueue(
                [PGQ_ENTRYPOINT] * len(ns), [message_value(n) for n in ns], [0] * len(ns), after
            )
            for job_id in ids:
                due[str(job_id)] = now
        if due_at:
            # pgqueuer stores NOW() + execute_after, NOW() being the insert's start: lateness is measured
            # against the due time pgqueuer actually holds, not the client's slightly earlier intent.
            rows = await conn.fetch(
                "SELECT id, extract(epoch FROM execute_after)::float8 AS due FROM pgqueuer"
            )
            due = {str(row["id"]): float(row["due"]) for row in rows}
    finally:
        await conn.close()
    return due


async def _pgqueuer_completed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        done = await conn.fetchval(
            "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'"
        )
        return int(done) if int(left) == 0 else -int(left)
    finally:
        await conn.close()


async def _pgqueuer_run(
    dsn: str, bootstrap_servers: str, jobs: int, tuning: PgQueuerTuning, due_at: Callable[[int], float] | None
) -> tuple[float, Acks, Schedule, tuple[int, int]]:
    await _pgqueuer_install(dsn)
    if bad := await unlogged_tables(dsn, "pgqueuer"):
        raise RuntimeError(f"pgqueuer tables not durable: {bad}")
    topic = await new_topic(bootstrap_servers, "pgqueuer")
    due = await _pgqueuer_enqueue(dsn, jobs, due_at)
    await analyze(dsn)
    acks = Acks(expected=jobs)
    connections = [await asyncpg.connect(dsn) for _ in range(tuning.managers)]
    try:
        async with shared_producer(bootstrap_servers) as producer:
            publisher = Publisher(producer, topic, acks)
            managers = []
            for conn in connections:
                qm = QueueManager(Queries.from_asyncpg_connection(conn))

                @qm.entrypoint(PGQ_ENTRYPOINT)
                async def publish_due(job: Job) -> None:
                    await publisher.publish(str(job.id), job.payload or b"")

                managers.append(qm)
            # Paced runs keep polling for future jobs; drained runs stop by themselves once the queue is empty.
            mode = QueueExecutionMode.continuous if due_at else QueueExecutionMode.drain
            started = time.perf_counter()
            worker = asyncio.gather(
                *(
                    qm.run(
                        dequeue_timeout=tuning.dequeue_timeout,
                        batch_size=tuning.batch_size,
                        mode=mode,
                        max_concurrent_tasks=tuning.max_concurrent_tasks,
                    )
                    for qm in managers
                )
            )

            def stop() -> None:
                for qm in managers:
                    qm.shutdown.set()

            await _until_acked(acks, worker, stop if due_at else None, timeout_s=max(120.0, jobs / 50))
            seconds = time.perf_counter() - started
    finally:
        for conn in connections:
            await conn.close()
    completed = await _pgqueuer_completed(dsn)
    if completed != jobs:
        raise RuntimeError(f"pgqueuer recorded {completed} completed jobs of {jobs}")
    checked = await verify(bootstrap_servers, topic, list(due))
    return seconds, acks, Schedule(due), checked


async def run_pgqueuer(
    pg_dsn: str, bootstrap_servers: str, jobs: int, tuning: PgQueuerTuning | None = None
) -> PeerResult:
    tuning = tuning or PgQueuerTuning()
    async with fresh_database(pg_dsn, "peer_pgqueuer") as dsn:
        seconds, _, _, checked = await _pgqueuer_run(dsn, bootstrap_servers, jobs, tuning, due_at=None)
    return _result("pgqueuer", version_of("pgqueuer"), jobs, seconds, checked, tuning.describe())


async def run_pgqueuer_lateness(
    pg_dsn: str,
    bootstrap_servers: str,
    rate_per_s: int = 1000,
    seconds: int = 20,
    tuning: PgQueuerTuning | None = None,
) -> PeerResult:
    tuning = tuning or PgQueuerTuning()
    jobs = rate_per_s * seconds
    async with fresh_database(pg_dsn, "peer_pgqueuer") as dsn:
        first_due = time.time() + _lead_s(jobs)
        _, acks, schedule, checked = await _pgqueuer_run(
            dsn, bootstrap_servers, jobs, tuning, due_at=lambda n: first_due + n / rate_per_s
        )
    span = max(acks.at.values()) - first_due
    return _result(
        "pgqueuer",
        version_of("pgqueuer"),
        jobs,
        span,
        checked,
        tuning.describe(),
        schedule.lateness_ms(acks),
        offered_per_s=rate_per_s,
    )


def _lead_s(jobs: int) -> float:
    """Time between scheduling and the first due job: enough to enqueue everything and start the worker."""
    return 3.0 + jobs / 5_000


# -- procrastinate ---------------------------------------------------------------------------------------------


def _procrastinate_app(dsn: str, tuning: ProcrastinateTuning) -> App:
    return App(
        connector=PsycopgConnector(conninfo=dsn, min_size=tuning.pool_size, max_size=tuning.pool_size),
    )


async def _procrastinate_enqueue(
    app: App, task_name: str, jobs: int, due_at: Callable[[int], float] | None
) -> dict[str, float]:
    template = app.tasks[task_name].configure().job
    due: dict[str, float] = {}
    for start in range(0, jobs, ENQUEUE_CHUNK):
        ns = range(start, min(jobs, start + ENQUEUE_CHUNK))
        now = time.time()
        batch: list[ProcrastinateJob] = [
            template.evolve(
                task_kwargs={"value": message_value(n).decode()},
                scheduled_at=dt.datetime.fromtimestamp(due_at(n), dt.UTC) if due_at else None,
            )
            for n in ns
        ]
        deferred = await app.job_manager.batch_defer_jobs_async(batch)
        for n, job in zip(ns, deferred, strict=True):
            due[str(job.id)] = due_at(n) if due_at else now
    return due


async def _procrastinate_unfinished(dsn: str) -> int:
    """Jobs not succeeded; succeeded ones are either deleted (delete_jobs) or kept with status 'succeeded'."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
        row = await cur.fetchone()
        return int(row[0]) if row else -1


async def _procrastinate_run(
    dsn: str,
    bootstrap_servers: str,
    jobs: int,
    tuning: ProcrastinateTuning,
    due_at: Callable[[int], float] | None,
) -> tuple[float, Acks, Schedule, tuple[int, int]]:
    topic = await new_topic(bootstrap_servers, "procrastinate")
    acks = Acks(expected=jobs)
    app = _procrastinate_app(dsn, tuning)
    async with shared_producer(bootstrap_servers) as producer:
        publisher = Publisher(producer, topic, acks)

        @app.task(name="publish_due", pass_context=True)
        async def publish_due(context: JobContext, value: str) -> None:
            await publisher.publish(str(context.job.id), value.encode())

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            if bad := await unlogged_tables(dsn, "procrastinate"):
                raise RuntimeError(f"procrastinate tables not durable: {bad}")
            due = await _procrastinate_enqueue(app, "publish_due", jobs, due_at)
            await analyze(dsn)
            started = time.perf_counter()
            workers = asyncio.gather(
                *(
                    app.run_worker_async(
                        name=f"bench-{i}",
                        concurrency=tuning.concurrency,
                        # A drained run stops once nothing is left; a paced run must wait for future jobs.
                        wait=due_at is not None,
                        listen_notify=tuning.listen_notify,
                        fetch_job_polling_interval=tuning.fetch_job_polling_interval,
                        delete_jobs=tuning.delete_jobs,
                        install_signal_handlers=False,
                    )
                    for i in range(tuning.workers)
                )
            )

            def stop() -> None:
                # Cancelling is procrastinate's documented graceful stop: running jobs finish first.
                workers.cancel()

            await _until_acked(acks, workers, stop if due_at else None, timeout_s=max(120.0, jobs / 50))
            seconds = time.perf_counter() - started
    if unfinished := await _procrastinate_unfinished(dsn):
        raise RuntimeError(f"procrastinate left {unfinished} jobs unfinished of {jobs}")
    checked = await verify(bootstrap_servers, topic, list(due))
    return seconds, acks, Schedule(due), checked


async def run_procrastinate(
    pg_dsn: str, bootstrap_servers: str, jobs: int, tuning: ProcrastinateTuning | None = None
) -> PeerResult:
    tuning = tuning or ProcrastinateTuning()
    async with fresh_database(pg_dsn, "peer_procrastinate") as dsn:
        seconds, _, _, checked = await _procrastinate_run(dsn, bootstrap_servers, jobs, tuning, due_at=None)
    return _result("procrastinate", version_of("procrastinate"), jobs, seconds, checked, tuning.describe())


async def run_procrastinate_lateness(
    pg_dsn: str,
    bootstrap_servers: str,
    rate_per_s: int = 1000,
    seconds: int = 20,
    tuning: ProcrastinateTuning | None = None,
) -> PeerResult:
    tuning = tuning or ProcrastinateTuning()
    jobs = rate_per_s * seconds
    async with fresh_database(pg_dsn, "peer_procrastinate") as dsn:
        first_due = time.time() + _lead_s(jobs)
        _, acks, schedule, checked = await _procrastinate_run(
            dsn, bootstrap_servers, jobs, tuning, due_at=lambda n: first_due + n / rate_per_s
        )
    span = max(acks.at.values()) - first_due
    return _result(
        "procrastinate",
        version_of("procrastinate"),
        jobs,
        span,
        checked,
        tuning.describe(),
        schedule.lateness_ms(acks),
        offered_per_s=rate_per_s,
    )


# -- standalone ------------------------------------------------------------------------------------------------


def format_results(results: Sequence[PeerResult]) -> str:
    lines = [
        "| Peer | Version | Run | Result | Exactly once | Tuning |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.lateness_p50_ms is None:
            run = f"{r.jobs:,} due jobs drained"
            result = f"**{r.jobs_per_s:,.0f} jobs/s** ({r.seconds:.1f} s)"
        else:
            run = f"{r.offered_per_s:,}/s falling due for {r.jobs / (r.offered_per_s or 1):,.0f} s"
            result = (
                f"lateness p50 **{r.lateness_p50_ms:,.0f} ms**, p99 **{r.lateness_p99_ms:,.0f} ms**, "
                f"max {r.lateness_max_ms:,.0f} ms; kept up at {r.jobs_per_s:,.0f}/s"
            )
        once = "yes" if r.exactly_once else f"NO ({r.duplicates} dup, {r.lost} lost)"
        lines.append(f"| {r.name} | {r.version} | {run} | {result} | {once} | {r.tuning} |")
    return "\n".join(lines)


# A rate procrastinate sustains on the 2-core bench machine, so its lateness is also shown without a backlog.
PROCRASTINATE_SUSTAINED_PER_S = 200


async def run_all(
    pg_dsn: str, bootstrap_servers: str, jobs: int, rate_per_s: int, seconds: int
) -> list[PeerResult]:
    return [
        await run_pgqueuer(pg_dsn, bootstrap_servers, jobs),
        await run_procrastinate(pg_dsn, bootstrap_servers, jobs),
        await run_pgqueuer_lateness(pg_dsn, bootstrap_servers, rate_per_s, seconds),
        await run_procrastinate_lateness(pg_dsn, bootstrap_servers, rate_per_s, seconds),
        await run_procrastinate_lateness(pg_dsn, bootstrap_servers, PROCRASTINATE_SUSTAINED_PER_S, seconds),
    ]


def main(jobs: int = 20_000, rate_per_s: int = 1000, seconds: int = 10) -> None:
    from apptremind_devstack.kafka import KafkaBroker
    from apptremind_devstack.ports import free_port
    from apptremind_devstack.postgres import PostgresServer

    work = Path(tempfile.mkdtemp(prefix="apptremind-bench-peers-"))
    pg = PostgresServer(work / "pg", port=free_port(), durable=True)
    kafka = KafkaBroker(work / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    try:
        pg.start()
        kafka.start()
        results = asyncio.run(run_all(pg.dsn(), kafka.bootstrap_servers, jobs, rate_per_s, seconds))
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(format_results(results))


if __name__ == "__main__":
    # Run from the importable module, not __main__: procrastinate warns about an App defined in __main__.
    from tests.bench.scheduler_peers import main as run_main

    run_main()
