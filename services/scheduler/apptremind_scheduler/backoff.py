"""Retry delays after a failed publish: exponential, capped, with full jitter. Pure: no I/O, no clock."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    max_s: float = 300.0
    max_attempts: int = 10

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the `attempt`-th failed attempt (1-based)."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # min() before the power would overflow float for large attempt numbers.
        exponent = min(attempt - 1, 64)
        return float(min(self.max_s, self.base_s * 2.0**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        # Full jitter: many jobs failing together (a broker outage) come back spread out, not in a wave.
        return (rng or random).uniform(0.0, self.ceiling(attempt))

    def exhausted(self, attempts: int) -> bool:
        """Whether a job that has made `attempts` attempts gets no more."""
        return attempts >= self.max_attempts
