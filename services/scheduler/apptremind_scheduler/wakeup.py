"""Wakes idle workers early when this process learns of a job due sooner than they planned to look.

Workers of other processes learn of it by their bounded idle poll (settings.scheduler_idle_poll_s).
"""

from __future__ import annotations

import asyncio


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """Sleeps up to timeout_s; True if woken by notify()."""
        if timeout_s <= 0:
            return False
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        self._event.clear()
        return True
