"""Sliding-window rate limits for the brute-force targets (logIn, signUp), per IP and per account.

State is per edge process: with N replicas behind a load balancer the effective limit is N times the
configured one, which still stops password guessing at scale; a shared store can replace `_windows`
without changing callers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import edge_error

RATE_LIMITED = "RATE_LIMITED"


@dataclass
class SlidingWindow:
    limit: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, deque[float]] = field(default_factory=dict)

    def hit(self, key: str) -> float | None:
        """Record an attempt; None when allowed, else the seconds until the next one would be."""
        now = self.clock()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) >= self.limit:
            return window[0] + self.window_s - now
        window.append(now)
        if len(self._windows) > 100_000:
            # Bound memory under a spray of distinct keys: forget windows that are already empty.
            self._windows = {k: w for k, w in self._windows.items() if w and w[-1] > now - self.window_s}
        return None

    def check(self, key: str, what: str) -> None:
        retry_after = self.hit(key)
        if retry_after is not None:
            error = edge_error(f"too many {what} attempts; retry in {retry_after:.0f}s", RATE_LIMITED)
            assert error.extensions is not None
            error.extensions["retryAfterSeconds"] = max(1, round(retry_after))
            raise error


@dataclass
class RateLimits:
    login_per_ip: SlidingWindow
    login_per_account: SlidingWindow
    signup_per_ip: SlidingWindow
    signup_per_account: SlidingWindow
    public_per_ip: SlidingWindow
    bookings_per_business: SlidingWindow

    @classmethod
    def per_minute(
        cls,
        login_per_ip: int,
        login_per_account: int,
        signup_per_ip: int,
        public_per_ip: int = 120,
        bookings_per_business: int = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> RateLimits:
        return cls(
            SlidingWindow(login_per_ip, 60.0, clock),
            SlidingWindow(login_per_account, 60.0, clock),
            SlidingWindow(signup_per_ip, 60.0, clock),
            # Per e-mail address, with the log-in's per-account allowance.
            SlidingWindow(login_per_account, 60.0, clock),
            SlidingWindow(public_per_ip, 60.0, clock),
            SlidingWindow(bookings_per_business, 60.0, clock),
        )
