"""End-to-end reminder benchmark (issue 5): reminders falling due at a steady rate (default 500/s for 60 s,
half e-mail, half SMS) through booking's outbox → relay → Kafka → scheduler → Kafka → the streams worker
(a real Faust process) → the SMTP sink and the SMS server. Lateness = arrival at the sink - remind_at;
lost and duplicated are counted at the sinks by recipient.

Standalone: `uv run python -m tests.bench.pipeline_bench --rate 100 --seconds 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.sms_server import SmsServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_platform.topics import ensure_topics
from tests.bench.proc_cpu import cpu_by_command, machine_cpu_seconds, process_cpu_seconds
from tests.fixtures.pipeline import request_reminders, running_pipeline

# Requests are all written before the first one falls due: a fixed margin plus the time writing them takes
# (booking's outbox, one advisory lock and insert each; measured well above 1,000/s).
LEAD_S = 15.0
WRITE_PER_S = 1000.0


@dataclass(frozen=True)
class PipelineResult:
    rate: int
    seconds: int
    reminders: int
    delivered: int
    # Not at a sink when the run stopped waiting (grace_s after the last due time): late, or lost.
    missing: int
    grace_s: float
    duplicates: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    drained_s: float
    # Reminders at the sinks per second, from the first due time to the last arrival: the rate the
    # pipeline sustained (below the offered rate when it fell behind).
    throughput_per_s: float = float("nan")
    # Where the lateness comes from: the scheduler's (due event acknowledged by Kafka - due time) and the
    # worker's queue (delivery row claimed - due time); p50/p99 in ms.
    scheduler_p50_ms: float = float("nan")
    scheduler_p99_ms: float = float("nan")
    claimed_p50_ms: float = float("nan")
    claimed_p99_ms: float = float("nan")
    # CPU time of the streams worker process(es) per delivered reminder: what the pipeline's own code
    # costs, which other load on the machine changes far less than it changes lateness.
    worker_cpu_ms: float = float("nan")
    # The same for this process: the harness (relays, scheduler-service, booking's stand-in, both sinks).
    harness_cpu_ms: float = float("nan")
    # The same for Postgres (every postgres process) and the Kafka broker (the JVM), and for the whole
    # machine: 2 cores give 2,000 ms of CPU a second, so 2,000 / machine_cpu_ms is this machine's ceiling.
    postgres_cpu_ms: float = float("nan")
    kafka_cpu_ms: float = float("nan")
    machine_cpu_ms: float = float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far."""
    return sum(process_cpu_seconds(pid) for pid in pids)


def stage_ms(rows: Iterable[Sequence[object]]) -> list[float]:
    """Milliseconds from the first timestamp of each row to its second."""
    out = []
    for start, end in rows:
        assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
        out.append((end - start).total_seconds() * 1000)
    return out


async def run_pipeline(
    postgres: PostgresServer,
    kafka: KafkaBroker,
    work: Path,
    rate: int = 500,
    seconds: int = 60,
    grace_s: float = 300.0,
    workers: int = 1,
) -> PipelineResult:
    async with AsyncExitStack() as stack:
        sink = stack.enter_context(SmtpSink(keep_messages=True))
        sms = SmsServer(port=free_port())
        sms.start()
        stack.callback(sms.stop)
        pipeline = await running_pipeline(stack, postgres, kafka, sink, work, sms=sms, workers=workers)
        worker_pids = [p.pid for p in (pipeline.worker.process, *pipeline.worker.siblings)]
        total = rate * seconds
        lead_s = LEAD_S + total / WRITE_PER_S
        first = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead_s)
        due = [first + dt.timedelta(seconds=i / rate) for i in range(total)]
        recipients = await request_reminders(pipeline, due, channels=("email", "sms"))
        due_of = dict(zip(recipients, due, strict=True))
        assert dt.datetime.now(dt.UTC) < first, "writing the requests took longer than the lead time"
        # CPU is counted from just before the first due time: what delivering costs, not what writing the
        # requests and scheduling them did beforehand.
        await asyncio.sleep(max(0.0, (first - dt.datetime.now(dt.UTC)).total_seconds() - 0.5))
        cpu_before = cpu_seconds(worker_pids)
        harness_before = sum(os.times()[:2])
        by_command_before = cpu_by_command()
        machine_before = machine_cpu_seconds()

        last_due = due[-1]
        deadline = time.monotonic() + lead_s + seconds + grace_s
        while True:
            arrived = len(sink.messages()) + len(sms.messages())
            if arrived >= total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # late duplicates, if any
        worker_cpu_s = cpu_seconds(worker_pids) - cpu_before
        harness_cpu_s = sum(os.times()[:2]) - harness_before
        machine_cpu_s = machine_cpu_seconds() - machine_before
        by_command = cpu_by_command()
        by_command.subtract(by_command_before)
        drained = (dt.datetime.now(dt.UTC) - last_due).total_seconds()

        arrivals: list[tuple[str, dt.datetime]] = [
            (to, m.received_at) for m in sink.messages() for to in m.envelope_to
        ] + [(m.to, m.date_created) for m in sms.messages()]
        seen = collections.Counter(r for r, _ in arrivals)
        first_arrival: dict[str, dt.datetime] = {}
        for r, at in sorted(arrivals, key=lambda a: a[1]):
            first_arrival.setdefault(r, at)
        lateness = [(at - due_of[r]).total_seconds() * 1000 for r, at in first_arrival.items() if r in due_of]
        span_s = (max(first_arrival.values()) - due[0]).total_seconds() if first_arrival else 0.0
        published = stage_ms(
            pipeline.scheduler_db.execute("SELECT due_at, updated_at FROM job WHERE state = 'completed'")
        )
        claimed = stage_ms(
            (due_of[str(r)], at)
            for r, at in pipeline.notification_db.execute("SELECT recipient, created_at FROM delivery")
            if str(r) in due_of
        )
        return PipelineResult(
            rate=rate,
            seconds=seconds,
            reminders=total,
            delivered=len(first_arrival),
            missing=len(set(recipients) - set(first_arrival)),
            grace_s=grace_s,
            duplicates=sum(n - 1 for n in seen.values() if n > 1),
            p50_ms=pct(lateness, 0.50) if lateness else float("nan"),
            p99_ms=pct(lateness, 0.99) if lateness else float("nan"),
            max_ms=max(lateness) if lateness else float("nan"),
            drained_s=drained,
            throughput_per_s=len(first_arrival) / span_s if span_s > 0 else float("nan"),
            scheduler_p50_ms=pct(published, 0.50) if published else float("nan"),
            scheduler_p99_ms=pct(published, 0.99) if published else float("nan"),
            claimed_p50_ms=pct(claimed, 0.50) if claimed else float("nan"),
            claimed_p99_ms=pct(claimed, 0.99) if claimed else float("nan"),
            worker_cpu_ms=worker_cpu_s * 1000 / max(1, len(first_arrival)),
            harness_cpu_ms=harness_cpu_s * 1000 / max(1, len(first_arrival)),
            postgres_cpu_ms=by_command["postgres"] * 1000 / max(1, len(first_arrival)),
            kafka_cpu_ms=by_command["java"] * 1000 / max(1, len(first_arrival)),
            machine_cpu_ms=machine_cpu_s * 1000 / max(1, len(first_arrival)),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1, help="streams worker processes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apptremind-pipeline-bench-"))
    pg = PostgresServer(work / "pg", port=free_port(), durable=True)
    kafka = KafkaBroker(work / "kafka", port=free_port(), controller_port=free_port(), log_level="WARN")
    try:
        pg.start()
        kafka.start()
        ensure_topics(kafka.bootstrap_servers)
        print(asyncio.run(run_pipeline(pg, kafka, work, args.rate, args.seconds, workers=args.workers)))
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
