"""A circuit breaker over two providers of one channel: the secondary takes over while the primary keeps
failing."""

from __future__ import annotations

from datetime import datetime, timedelta

from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.logs import get_logger

from .base import OutgoingMessage, Provider, ProviderError, SendResult

log = get_logger(__name__)


class FailoverProvider:
    """Sends through ``primary`` until it fails ``failure_threshold`` times in a row with a retryable error;
    then the circuit opens and everything goes through ``secondary`` for ``cooldown_s``. The first send
    after the cooldown tries the primary again (half-open): a success closes the circuit, a retryable
    failure opens it for another cooldown and that message goes through the secondary.

    The message whose failure opens the circuit is sent through the secondary at once rather than handed
    back for a retry. A permanent (non-retryable) failure of the primary is about the message, not the
    provider, so it is raised as it is and does not count. A failure of the secondary is raised as it is.
    """

    def __init__(
        self,
        primary: Provider,
        secondary: Provider,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = f"{primary.name}+{secondary.name}"
        self.primary = primary
        self.secondary = secondary
        self._threshold = failure_threshold
        self._cooldown = timedelta(seconds=cooldown_s)
        self._clock = clock or SystemClock()
        self._failures = 0
        self._open_until: datetime | None = None

    @property
    def circuit_open(self) -> bool:
        return self._open_until is not None and self._clock.now() < self._open_until

    async def send(self, message: OutgoingMessage) -> SendResult:
        if self.circuit_open:
            return await self.secondary.send(message)
        try:
            result = await self.primary.send(message)
        except ProviderError as exc:
            if not exc.retryable:
                raise
            self._failures += 1
            if self._failures < self._threshold:
                raise
            self._open_until = self._clock.now() + self._cooldown
            log.warning(
                "provider_failover_open",
                primary=self.primary.name,
                secondary=self.secondary.name,
                failures=self._failures,
                reason=exc.reason,
                until=self._open_until.isoformat(),
            )
            return await self.secondary.send(message)
        if self._open_until is not None:
            log.info("provider_failover_closed", primary=self.primary.name)
        self._failures = 0
        self._open_until = None
        return result

    async def aclose(self) -> None:
        try:
            await self.primary.aclose()
        finally:
            await self.secondary.aclose()
