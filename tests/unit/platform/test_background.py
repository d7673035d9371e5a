"""Periodic housekeeping runs at once, keeps running after a failure, and stops with the process."""

from __future__ import annotations

import asyncio

from apptremind_platform.background import periodic


async def test_a_periodic_job_survives_failures_and_stops_when_asked() -> None:
    calls: list[int] = []
    stop = asyncio.Event()

    async def job() -> int:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("the database blinked")
        if len(calls) == 4:
            stop.set()
        return len(calls)

    await asyncio.wait_for(periodic("test", 0.01, job)(stop), 5)
    assert calls == [0, 1, 2, 3]


async def test_a_set_stop_event_ends_the_wait_between_runs() -> None:
    stop = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1

    task = asyncio.create_task(periodic("test", 3600, job)(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runs == 1
