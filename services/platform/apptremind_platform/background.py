"""Long-running tasks a service process runs beside its gRPC server and consumers (housekeeping, workers).

A task is a coroutine function taking the process's stop event; it returns when the event is set. `periodic`
builds the common case: run a job every interval (with jitter, so replicas do not fire in step), logging and
surviving its failures — housekeeping must never take the process down.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .logs import get_logger

log = get_logger(__name__)

BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def periodic(name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> BackgroundTask:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                result = await job()
                log.debug("periodic_job_done", job=name, result=result)
            except Exception:
                log.exception("periodic_job_failed", job=name)
            delay = interval_s * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    return run
