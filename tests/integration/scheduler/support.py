"""Shared helpers for the scheduler-service tests: a harness around one running service, token metadata,
real encoded events, and reading due events back from Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto2
import grpc
import grpc.aio
import pytest

from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_gen.apptremind.scheduler import v1 as pb
from apptremind_platform.envelope import decode
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.service import ServiceRuntime
from apptremind_scheduler.settings import SchedulerSettings
from tests.fixtures.db import ServiceDb
from tests.fixtures.kafka_io import Record, read_until
from tests.fixtures.tokens import SigningKeys

M = TypeVar("M", bound=betterproto2.Message)
Metadata = list[tuple[str, str]]

DUE_TOPIC = "scheduler.reminder.due.v1"


def fast_engine(**overrides: Any) -> SchedulerSettings:
    """Engine settings for tests: short polls and backoff so recovery paths run in seconds. The lease
    stays long: a first publish to a fresh broker can take seconds, and a lease that expires under a
    working worker is exactly the case where a job may be emitted twice. The publish timeout is the
    production default (it must stay below the lease): a publish that times out turns normal operation
    into the retry path (attempts 2, possibly a second copy of an event that was written after all), which
    the exactly-once tests rightly count as a failure, and on a loaded 2-core machine a first idempotent
    publish took over 7 s (the broker allocating producer ids). Tests of the timeout set their own."""
    values: dict[str, Any] = {
        "scheduler_workers": 2,
        "scheduler_batch_size": 100,
        "scheduler_lease_s": 30.0,
        "scheduler_idle_poll_s": 0.05,
        "scheduler_backoff_base_s": 0.2,
        "scheduler_backoff_max_s": 1.0,
        "scheduler_publish_timeout_s": 15.0,
        "scheduler_reclaim_interval_s": 0.2,
    }
    return SchedulerSettings(**(values | overrides))


@dataclass
class Harness:
    runtime: ServiceRuntime
    db: ServiceDb
    client: AsyncServiceClient
    keys: SigningKeys
    bootstrap: str

    def metadata(self, user_id: str, memberships: dict[str, str]) -> Metadata:
        return list(self.keys.caller(user_id, memberships).to_metadata())

    def tenant(self, role: str = "owner") -> tuple[str, Metadata]:
        business_id = str(uuid.uuid4())
        return business_id, self.metadata(str(uuid.uuid4()), {business_id: role})

    async def call(
        self, method: str, request: betterproto2.Message, response_type: type[M], metadata: Metadata
    ) -> M:
        return await self.client.call(method, request, response_type, metadata=metadata, timeout=20)

    async def schedule(self, request: pb.ScheduleRequest, metadata: Metadata) -> pb.Job:
        response = await self.call("Schedule", request, pb.ScheduleResponse, metadata)
        assert response.job is not None
        return response.job

    def jobs(self, business_id: str) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT idempotency_key, state, topic, attempts FROM job WHERE business_id = %s ORDER BY job_id",
            (business_id,),
        )


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (code, reason), info.value.details()


def due_events(record: Record) -> JobDue:
    decoded = decode(record.topic, record.value)
    assert isinstance(decoded.data, JobDue)
    return decoded.data


def read_due(
    bootstrap: str,
    business_ids: set[str],
    expected: int,
    topic: str = DUE_TOPIC,
    timeout_s: float = 90.0,
    settle_s: float = 2.0,
) -> list[Record]:
    """Reads the due events of these businesses until `expected` distinct jobs arrived (plus a settle time
    in which duplicates would show)."""

    seen: set[str] = set()

    def keep(record: Record) -> bool:
        event = due_events(record)
        if event.business_id not in business_ids:
            return False
        seen.add(event.job_id)
        return True

    def done(records: list[Record]) -> bool:
        return len(seen) >= expected

    return read_until(bootstrap, [topic], done, keep=keep, timeout_s=timeout_s, settle_s=settle_s)


def emitted_per_job(records: list[Record]) -> Counter[str]:
    return Counter(due_events(r).job_id for r in records)


async def eventually(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Waits for a state the system reaches on its own (a lease expiring, a retry); fails if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s}s")
        await asyncio.sleep(0.05)


def utc_in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
