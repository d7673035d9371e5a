"""The deadline of the call being handled, so work done on its behalf never outlives it.

The server interceptor stores the incoming call's deadline here; outgoing gRPC calls, database statements and
other waits made while handling it take `remaining()` as their timeout. The deadline is kept as an absolute
monotonic time so nested code needs no arithmetic and every reader sees the same clock.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("apptremind_deadline", default=None)


def set_timeout(seconds: float | None) -> contextvars.Token[float | None]:
    """Start a deadline `seconds` from now (None: no deadline); reset with the returned token."""
    return _deadline.set(None if seconds is None else time.monotonic() + max(seconds, 0.0))


def reset(token: contextvars.Token[float | None]) -> None:
    _deadline.reset(token)


@contextmanager
def scope(seconds: float | None) -> Iterator[None]:
    """Narrow the deadline for a block; an outer, earlier deadline still wins."""
    current = _deadline.get()
    proposed = None if seconds is None else time.monotonic() + max(seconds, 0.0)
    if current is not None and (proposed is None or current < proposed):
        proposed = current
    token = _deadline.set(proposed)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left (never negative), or None when the current work has no deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.0)


def timeout_or(default: float) -> float:
    """The timeout to give a call made now: `default`, cut short by the current deadline."""
    left = remaining()
    return default if left is None else min(default, left)


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0.0
