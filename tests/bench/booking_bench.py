"""Booking benchmarks (issue 4): availability at the service and through GraphQL, and the 200-way race.

Setup goes through the public API like a real business: sign-up, staff, 24 h working hours, a 30 min
service, then 500 appointments over the first 13 of the 14 queried days (a nearly full calendar: about ten
free slots per answer). Every component runs as its own process, as deployed: the edge
(uvicorn), auth, business and booking (`python -m apptremind_<service>.bootstrap`), one outbox relay per
database; this process only generates load and measures, so neither distorts the other's event loop. A
second booking process on the same database with its availability cache turned off gives the engine's
uncached latency next to the cached one, and a second edge with the availability micro-cache on (ADR 0015)
gives the GraphQL number with it next to the one without. CPU time per request of every process is read
from /proc, since req/s and p99 move with whatever else runs on the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import httpx

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port, wait_for_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.booking import v1 as booking
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.settings import ServiceSettings
from apptremind_platform.topics import ensure_topics
from tests.bench.proc_cpu import process_cpu_seconds
from tests.e2e.conftest import SPECS
from tests.fixtures.services import database_for, settings_for

ROOT = Path(__file__).resolve().parents[2]


MODULES = {
    "auth": "apptremind_auth.bootstrap",
    "business": "apptremind_business.bootstrap",
    "booking": "apptremind_booking.bootstrap",
}


@dataclass(frozen=True)
class BookingResult:
    service_p50_ms: float
    service_p99_ms: float
    service_queries: int
    slots_per_query: int
    appointments: int
    # The same query at a booking process with the availability cache off (the engine on every call).
    service_uncached_p50_ms: float
    service_uncached_p99_ms: float
    service_uncached_queries: int
    # Through GraphQL with the edge's availability micro-cache off: every request runs the operation and
    # calls booking-service.
    graphql_rps: float
    graphql_p50_ms: float
    graphql_p99_ms: float
    graphql_requests: int
    graphql_concurrency: int
    # The same load at a second edge process with the micro-cache on (ADR 0015): answers up to
    # `graphql_cache_ttl_s` old; `graphql_cached_hits` of the requests were answered from it.
    graphql_cached_rps: float
    graphql_cached_p50_ms: float
    graphql_cached_p99_ms: float
    graphql_cached_hits: int
    graphql_cached_requests: int
    graphql_cache_ttl_s: float
    # CPU milliseconds per request of each process during the two GraphQL loads (from /proc, so the number
    # holds even when other work shares the machine; "load generator" is this process; Postgres not counted).
    graphql_cpu_ms: dict[str, float]
    graphql_cached_cpu_ms: dict[str, float]
    race_winners: int
    race_slot_taken: int
    race_total_ms: float
    race_p99_ms: float
    # `os.getloadavg()` (1, 5, 15 min) when the measurements started and ended: the machine may be shared.
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def env_of(settings: ServiceSettings, **extra: str) -> dict[str, str]:
    """The environment a service process reads the same settings from (APPTREMIND_*)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude={"kafka"}).items():
        env[f"APPTREMIND_{name.upper()}"] = str(value)
    env["APPTREMIND_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    return env | extra


class Processes:
    """Child processes of the benchmark, stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._children: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.pids: dict[str, int] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self._log_dir / f"{name}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self._children.append((child, log))
        self.pids[name] = child.pid

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time of every child so far, and of this process ("load generator")."""
        return {"load generator": time.process_time()} | {
            name: process_cpu_seconds(pid) for name, pid in self.pids.items()
        }

    def stop(self) -> None:
        for child, _ in reversed(self._children):
            child.terminate()
        for child, log in reversed(self._children):
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
            log.close()
        self._children.clear()


def start_service(
    processes: Processes,
    name: str,
    settings: ServiceSettings,
    *,
    relay: bool = True,
    extra: dict[str, str] | None = None,
) -> None:
    env = env_of(settings, APPTREMIND_LOG_LEVEL="warning", **(extra or {}))
    if relay:
        processes.start(f"{name}-relay", ["-m", "apptremind_platform.relay_cli"], env)
    processes.start(name, ["-m", MODULES[settings.service_name]], env)


def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU milliseconds per request of each process that did any work in between."""
    spent = {name: (after[name] - before[name]) * 1000 / requests for name in before}
    return {name: round(ms, 3) for name, ms in spent.items() if ms >= 0.005}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def gql(client: httpx.AsyncClient, query: str, token: str = "", key: str = "", **variables: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if key:
        headers["idempotency-key"] = key
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


async def setup(client: httpx.AsyncClient) -> tuple[str, str, str]:
    data = await gql(
        client,
        """mutation { signUp(input: {email: "bench@example.com", password: "correct horse battery",
           businessName: "Bench", businessSlug: "bench", timeZone: "Europe/Berlin"}) { session { accessToken refreshToken } } }""",
    )
    session = data["signUp"]["session"]
    for _ in range(600):
        me = await gql(client, "{ me { memberships { businessId } } }", session["accessToken"])
        if me["me"]["memberships"]:
            break
        await asyncio.sleep(0.1)
    business_id = me["me"]["memberships"][0]["businessId"]
    token = (
        await gql(
            client,
            "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            t=session["refreshToken"],
        )
    )["refreshSession"]["accessToken"]
    staff = (
        await gql(
            client,
            'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "S"}) { id } }',
            token,
            b=business_id,
        )
    )["createStaff"]["id"]
    hours = ", ".join(f'{{weekday: {d}, startTime: "00:00", endTime: "24:00"}}' for d in range(1, 8))
    await gql(
        client,
        f"mutation($b: ID!, $s: ID!) {{ setWorkingHours(input: {{businessId: $b, staffId: $s, hours: [{hours}]}}) {{ staffId }} }}",
        token,
        b=business_id,
        s=staff,
    )
    service = (
        await gql(
            client,
            'mutation($b: ID!, $s: ID!) { createService(input: {businessId: $b, name: "Cut", durationMinutes: 30, priceMinor: 100, staffIds: [$s]}) { id } }',
            token,
            b=business_id,
            s=staff,
        )
    )["createService"]["id"]
    return business_id, staff, service


AVAILABILITY = """query($from: DateTime!, $to: DateTime!, $s: ID!) { availability(businessSlug: "bench", serviceId: $s,
  from: $from, to: $to, timeZone: "America/New_York") { startTime } }"""
BOOK = """mutation($s: ID!, $start: DateTime!, $n: String!, $e: String!) { bookAppointment(input: {businessSlug: "bench",
  serviceId: $s, startTime: $start, customer: {name: $n, email: $e}}) { appointment { id } } }"""


async def service_latencies(
    port: int, request: booking.GetAvailabilityRequest, n: int
) -> tuple[list[float], int]:
    """`n` sequential GetAvailability calls straight to one booking process: (milliseconds, slots)."""
    channel = open_channel(f"127.0.0.1:{port}")
    client = AsyncServiceClient(channel, "apptremind.booking.v1.BookingService")
    timings: list[float] = []
    slots = 0
    try:
        for _ in range(n):
            t = time.perf_counter()
            response = await client.call(
                "GetAvailability", request, booking.GetAvailabilityResponse, timeout=30
            )
            timings.append((time.perf_counter() - t) * 1000)
            slots = len(response.slots)
    finally:
        await channel.close()
    return timings, slots


@dataclass(frozen=True)
class Load:
    timings_ms: list[float]
    seconds: float
    # Answers the edge marked as reused from its micro-cache (`Cache-Status: ...; hit`).
    cache_hits: int


async def graphql_load(
    url: str, body: dict[str, Any], *, concurrency: int, total: int = 0, seconds: float = 0.0
) -> Load:
    """`total` POSTs (or as many as fit in `seconds`) by `concurrency` keep-alive connections.

    aiohttp rather than httpx: its client costs far less CPU per request, and on two cores every
    microsecond the load generator spends is taken from the system under test.
    """
    timings: list[float] = []
    hits = 0
    queue = iter(range(total)) if total else itertools.count()
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal hits
            for _ in queue:
                t = time.perf_counter()
                async with session.post(url, json=body) as response:
                    payload = await response.json()
                    hits += response.headers.get("cache-status", "").endswith("; hit")
                if payload.get("errors") or not payload["data"]["availability"]:
                    raise RuntimeError(payload.get("errors"))
                timings.append((time.perf_counter() - t) * 1000)
                if seconds and time.perf_counter() >= deadline:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Load(timings, time.perf_counter() - t0, hits)


def start_edge(
    processes: Processes, name: str, port: int, targets: dict[str, int], cache_ttl_s: float
) -> None:
    processes.start(
        name,
        ["-m", "apptremind_edge.app"],
        {
            **os.environ,
            "APPTREMIND_EDGE_PORT": str(port),
            "APPTREMIND_SERVICE_TARGETS": ",".join(f"{n}=127.0.0.1:{p}" for n, p in targets.items()),
            "APPTREMIND_EDGE_PUBLIC_PER_IP_PER_MINUTE": "10000000",
            "APPTREMIND_EDGE_BOOKINGS_PER_BUSINESS_PER_MINUTE": "10000000",
            "APPTREMIND_EDGE_AVAILABILITY_CACHE_TTL_S": str(cache_ttl_s),
            "APPTREMIND_LOG_LEVEL": "warning",
        },
    )


async def run_booking(postgres: PostgresServer, kafka: KafkaBroker, log_dir: Path) -> BookingResult:
    names = ("auth", "business", "booking")
    dbs = {n: database_for(postgres, SPECS[n]) for n in names}
    ports = {n: free_port() for n in names}
    uncached_port = free_port()
    # Two edges in front of the same services: micro-cache off (setup, the race and the plain GraphQL
    # number) and on (ADR 0015), so both numbers come from one run.
    edge_port, cached_edge_port = free_port(), free_port()
    cache_ttl_s = 1.0
    processes = Processes(log_dir)
    with ExitStack() as stack:
        stack.callback(processes.stop)
        for n in names:
            start_service(
                processes,
                n,
                settings_for(
                    SPECS[n],
                    dbs[n],
                    kafka,
                    grpc_port=ports[n],
                    auth_target=f"127.0.0.1:{ports['auth']}",
                    # A fresh broker per run: a new group reads everything, whenever it is assigned.
                    consumer_group=f"{n}-{uuid.uuid4().hex[:6]}",
                    consumer_offset_reset="earliest",
                    db_pool_max=20,
                ),
                # Availability is measured, not billing: the one staff member fits any plan, and the seat
                # check would need billing-service running too.
                extra={"APPTREMIND_BILLING_SEAT_CHECK": "false"} if n == "business" else None,
            )
        start_edge(processes, "edge", edge_port, ports, 0.0)
        start_edge(processes, "edge-cached", cached_edge_port, ports, cache_ttl_s)
        for port in (*ports.values(), edge_port, cached_edge_port):
            wait_for_port("127.0.0.1", port, 120)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{edge_port}", limits=limits, timeout=30
        ) as client:
            business_id, staff, service = await setup(client)
            day0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(
                days=1
            )
            frm, to = day0.isoformat(), (day0 + dt.timedelta(days=14)).isoformat()
            for _ in range(600):  # the booking read model catches up with the catalog events
                try:
                    if (await gql(client, AVAILABILITY, **{"from": frm}, to=to, s=service))["availability"]:
                        break
                except RuntimeError:
                    pass
                await asyncio.sleep(0.1)
            # 500 appointments over 13 days, 40 minutes apart on average (on the 15 min grid, so 30 or 45),
            # each by its own customer (the cap on pending bookings per contact would refuse a sixth one).
            booked = 0
            for i in range(500):
                start = day0 + dt.timedelta(hours=1, minutes=40 * i // 15 * 15)
                await gql(
                    client,
                    BOOK,
                    key=uuid.uuid4().hex,
                    s=service,
                    start=start.isoformat(),
                    n=f"c{i}",
                    e=f"c{i}@example.com",
                )
                booked += 1

            # The engine on every call: a second booking process on the same database, cache off, no relay
            # (it writes nothing here) and a group of its own that starts at the end (the read model is full).
            start_service(
                processes,
                "booking-uncached",
                settings_for(
                    SPECS["booking"],
                    dbs["booking"],
                    kafka,
                    grpc_port=uncached_port,
                    auth_target=f"127.0.0.1:{ports['auth']}",
                    consumer_group=f"booking-uncached-{uuid.uuid4().hex[:6]}",
                    consumer_offset_reset="latest",
                ),
                relay=False,
                extra={"APPTREMIND_BOOKING_AVAILABILITY_CACHE_SLOTS": "0"},
            )
            wait_for_port("127.0.0.1", uncached_port, 120)

            load_before = os.getloadavg()
            # Availability at the service: direct gRPC, one query at a time.
            request = booking.GetAvailabilityRequest(
                business_id=business_id,
                service_id=service,
                staff_id=staff,
                from_time=day0,
                to_time=day0 + dt.timedelta(days=14),
                time_zone="America/New_York",
            )
            uncached_ms, uncached_slots = await service_latencies(uncached_port, request, 100)
            service_ms, slots = await service_latencies(ports["booking"], request, 300)
            assert slots == uncached_slots, "the cached and the uncached process disagree"

            # The same query through GraphQL over HTTP, concurrency 32, after a short warm-up: at the edge
            # without the micro-cache, then at the one with it.
            concurrency, total = 32, 3000
            body = {"query": AVAILABILITY, "variables": {"from": frm, "to": to, "s": service}}
            url = f"http://127.0.0.1:{edge_port}/graphql"
            await graphql_load(url, body, concurrency=concurrency, total=300)
            cpu0 = processes.cpu_seconds()
            plain = await graphql_load(url, body, concurrency=concurrency, total=total)
            cpu1 = processes.cpu_seconds()
            assert plain.cache_hits == 0, "the edge with the micro-cache off answered from it"
            # Timed, so the cached answer expires several times during the run whatever the rate (the
            # misses after each expiry are part of the result).
            cached_url = f"http://127.0.0.1:{cached_edge_port}/graphql"
            await graphql_load(cached_url, body, concurrency=concurrency, total=300)
            cpu1 = processes.cpu_seconds()
            cached = await graphql_load(cached_url, body, concurrency=concurrency, seconds=8 * cache_ttl_s)
            cpu2 = processes.cpu_seconds()
            cached_total = len(cached.timings_ms)

            # The 200-way race for one free slot.
            race_start = (day0 + dt.timedelta(days=13, hours=23)).isoformat()
            race_ms: list[float] = []

            async def racer(n: int) -> str:
                t = time.perf_counter()
                try:
                    await gql(
                        client,
                        BOOK,
                        key=uuid.uuid4().hex,
                        s=service,
                        start=race_start,
                        n=f"r{n}",
                        e=f"r{n}@example.com",
                    )
                    return "won"
                except RuntimeError as err:
                    return str(err.args[0][0]["extensions"].get("reason"))
                finally:
                    race_ms.append((time.perf_counter() - t) * 1000)

            t0 = time.perf_counter()
            outcomes = await asyncio.gather(*(racer(n) for n in range(200)))
            race_total = (time.perf_counter() - t0) * 1000
            load_after = os.getloadavg()
    return BookingResult(
        service_p50_ms=statistics.median(service_ms),
        service_p99_ms=pct(service_ms, 0.99),
        service_queries=len(service_ms),
        slots_per_query=slots,
        appointments=booked,
        service_uncached_p50_ms=statistics.median(uncached_ms),
        service_uncached_p99_ms=pct(uncached_ms, 0.99),
        service_uncached_queries=len(uncached_ms),
        graphql_rps=total / plain.seconds,
        graphql_p50_ms=statistics.median(plain.timings_ms),
        graphql_p99_ms=pct(plain.timings_ms, 0.99),
        graphql_requests=total,
        graphql_concurrency=concurrency,
        graphql_cached_rps=cached_total / cached.seconds,
        graphql_cached_p50_ms=statistics.median(cached.timings_ms),
        graphql_cached_p99_ms=pct(cached.timings_ms, 0.99),
        graphql_cached_hits=cached.cache_hits,
        graphql_cached_requests=cached_total,
        graphql_cache_ttl_s=cache_ttl_s,
        graphql_cpu_ms=per_request(cpu0, cpu1, total),
        graphql_cached_cpu_ms=per_request(cpu1, cpu2, cached_total),
        race_winners=outcomes.count("won"),
        race_slot_taken=outcomes.count("slot_taken"),
        race_total_ms=race_total,
        race_p99_ms=pct(race_ms, 0.99),
        load_before=load_before,
        load_after=load_after,
    )


def main() -> None:
    """Only this benchmark, on its own Postgres and Kafka: `PYTHONPATH=. python -m tests.bench.booking_bench`."""
    work = Path(tempfile.mkdtemp(prefix="apptremind-booking-bench-"))
    pg = PostgresServer(work / "pg", port=free_port(), durable=True)
    kafka = KafkaBroker(work / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    try:
        pg.start()
        kafka.start()
        ensure_topics(kafka.bootstrap_servers)
        result = asyncio.run(run_booking(pg, kafka, work))
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(dataclasses.asdict(result), indent=2))


if __name__ == "__main__":
    main()
