"""Booking benchmarks (issue 4): availability at the service and through GraphQL, and the 200-way race.

Setup goes through the public API like a real business: sign-up, staff, 24 h working hours, a 30 min
service, then 500 appointments over 14 days. The edge runs as its own uvicorn process (as deployed);
auth, business and booking run in this process, each with its database, relay and consumer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port, wait_for_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.booking import v1 as booking
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.service import ServiceRuntime
from tests.e2e.conftest import SPECS
from tests.fixtures.relay import running_relay
from tests.fixtures.services import database_for, settings_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BookingResult:
    service_p50_ms: float
    service_p99_ms: float
    service_queries: int
    slots_per_query: int
    graphql_rps: float
    graphql_p50_ms: float
    graphql_p99_ms: float
    graphql_requests: int
    graphql_concurrency: int
    race_winners: int
    race_slot_taken: int
    race_total_ms: float
    race_p99_ms: float


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


async def run_booking(postgres: PostgresServer, kafka: KafkaBroker, log_dir: Path) -> BookingResult:
    names = ("auth", "business", "booking")
    dbs = {n: database_for(postgres, SPECS[n]) for n in names}
    ports = {n: free_port() for n in names}
    edge_port = free_port()
    async with AsyncExitStack() as stack:
        for db in dbs.values():
            stack.enter_context(running_relay(db.dsn, kafka, idle_sleep_s=0.02))
        runtimes = []
        for n in names:
            runtime = ServiceRuntime(
                SPECS[n],
                settings_for(
                    SPECS[n],
                    dbs[n],
                    kafka,
                    grpc_port=ports[n],
                    auth_target=f"127.0.0.1:{ports['auth']}",
                    consumer_group=f"{n}-{uuid.uuid4().hex[:6]}",
                    consumer_offset_reset="latest",
                    db_pool_max=20,
                ),
            )
            await runtime.start()
            await runtime.consumers_assigned()
            runtimes.append(runtime)
        edge = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [sys.executable, "-m", "apptremind_edge.app"],
            cwd=ROOT,
            env={
                **os.environ,
                "APPTREMIND_EDGE_PORT": str(edge_port),
                "APPTREMIND_SERVICE_TARGETS": ",".join(f"{n}=127.0.0.1:{p}" for n, p in ports.items()),
                "APPTREMIND_EDGE_PUBLIC_PER_IP_PER_MINUTE": "10000000",
                "APPTREMIND_EDGE_BOOKINGS_PER_BUSINESS_PER_MINUTE": "10000000",
                "APPTREMIND_LOG_LEVEL": "warning",
            },
            stdout=(log_dir / "edge.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", edge_port, 30)
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{edge_port}", limits=limits, timeout=30
            ) as client:
                business_id, staff, service = await setup(client)
                day0 = dt.datetime.now(dt.UTC).replace(
                    hour=0, minute=0, second=0, microsecond=0
                ) + dt.timedelta(days=1)
                frm, to = day0.isoformat(), (day0 + dt.timedelta(days=14)).isoformat()
                for _ in range(600):  # the booking read model catches up with the catalog events
                    try:
                        if (await gql(client, AVAILABILITY, **{"from": frm}, to=to, s=service))[
                            "availability"
                        ]:
                            break
                    except RuntimeError:
                        pass
                    await asyncio.sleep(0.1)
                # 500 appointments spread over the 14 days, one every 40 minutes.
                booked = 0
                i = 0
                while booked < 500 and i < 2000:
                    start = day0 + dt.timedelta(hours=1) + dt.timedelta(minutes=40 * i)
                    i += 1
                    try:
                        await gql(
                            client, BOOK, key=uuid.uuid4().hex, s=service, start=start.isoformat(), n=f"c{i}"
                        )
                        booked += 1
                    except RuntimeError:
                        continue

                # Availability at the service: direct gRPC, one query at a time.
                channel = open_channel(f"127.0.0.1:{ports['booking']}")
                grpc_client = AsyncServiceClient(channel, "apptremind.booking.v1.BookingService")
                request = booking.GetAvailabilityRequest(
                    business_id=business_id,
                    service_id=service,
                    staff_id=staff,
                    from_time=day0,
                    to_time=day0 + dt.timedelta(days=14),
                    time_zone="America/New_York",
                )
                service_ms: list[float] = []
                slots = 0
                for _ in range(300):
                    t = time.perf_counter()
                    response = await grpc_client.call(
                        "GetAvailability", request, booking.GetAvailabilityResponse
                    )
                    service_ms.append((time.perf_counter() - t) * 1000)
                    slots = len(response.slots)
                await channel.close()

                # The same query through GraphQL over HTTP, concurrency 32.
                concurrency, total = 32, 2000
                graphql_ms: list[float] = []
                queue = iter(range(total))

                async def worker() -> None:
                    for _ in queue:
                        t = time.perf_counter()
                        await gql(client, AVAILABILITY, **{"from": frm}, to=to, s=service)
                        graphql_ms.append((time.perf_counter() - t) * 1000)

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                graphql_s = time.perf_counter() - t0

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
        finally:
            edge.terminate()
            edge.wait(20)
            for runtime in runtimes:
                await runtime.stop(0)
    return BookingResult(
        service_p50_ms=statistics.median(service_ms),
        service_p99_ms=pct(service_ms, 0.99),
        service_queries=len(service_ms),
        slots_per_query=slots,
        graphql_rps=total / graphql_s,
        graphql_p50_ms=statistics.median(graphql_ms),
        graphql_p99_ms=pct(graphql_ms, 0.99),
        graphql_requests=total,
        graphql_concurrency=concurrency,
        race_winners=outcomes.count("won"),
        race_slot_taken=outcomes.count("slot_taken"),
        race_total_ms=race_total,
        race_p99_ms=pct(race_ms, 0.99),
    )
