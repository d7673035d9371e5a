"""The failover circuit breaker, driven by a settable clock and scripted providers."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest

from apptremind_notification.channels.base import OutgoingMessage, ProviderError, SendResult
from apptremind_notification.channels.failover import FailoverProvider
from apptremind_platform.clock import SettableClock

MSG = OutgoingMessage(channel="sms", recipient="+4915112345678", text="hi", reference="d1")


class ScriptedProvider:
    """Answers from a script: None sends, a ProviderError is raised; an empty script always sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.script: deque[ProviderError | None] = deque()
        self.sent: list[str] = []
        self.attempts = 0
        self.closed = False

    def fail(self, times: int, *, retryable: bool = True) -> None:
        self.script.extend(
            ProviderError("down", retryable=retryable, provider=self.name) for _ in range(times)
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.attempts += 1
        outcome = self.script.popleft() if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(message.reference)
        return SendResult(self.name, f"{self.name}-{len(self.sent)}")

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


def make(clock: SettableClock, threshold: int = 3, cooldown_s: float = 60.0):
    primary, secondary = ScriptedProvider("p"), ScriptedProvider("s")
    breaker = FailoverProvider(
        primary, secondary, failure_threshold=threshold, cooldown_s=cooldown_s, clock=clock
    )
    return breaker, primary, secondary


async def test_failures_below_threshold_are_raised_for_retry(clock: SettableClock) -> None:
    breaker, primary, secondary = make(clock)
    primary.fail(2)
    for _ in range(2):
        with pytest.raises(ProviderError) as err:
            await breaker.send(MSG)
        assert err.value.retryable
    assert not breaker.circuit_open
    assert (await breaker.send(MSG)).provider == "p"
    assert secondary.attempts == 0


async def test_threshold_opens_the_circuit_then_cooldown_returns_to_primary(clock: SettableClock) -> None:
    breaker, primary, secondary = make(clock, threshold=3, cooldown_s=60)
    primary.fail(3)
    for _ in range(2):
        with pytest.raises(ProviderError):
            await breaker.send(MSG)
    # The third consecutive failure opens the circuit; that message goes through the secondary at once.
    assert (await breaker.send(MSG)).provider == "s"
    assert breaker.circuit_open
    clock.advance(timedelta(seconds=59))
    assert (await breaker.send(MSG)).provider == "s"
    assert primary.attempts == 3  # not tried while open
    assert len(secondary.sent) == 2
    clock.advance(timedelta(seconds=2))
    assert (await breaker.send(MSG)).provider == "p"
    assert not breaker.circuit_open


async def test_half_open_failure_reopens_immediately(clock: SettableClock) -> None:
    breaker, primary, _ = make(clock, threshold=2, cooldown_s=30)
    primary.fail(3)
    with pytest.raises(ProviderError):
        await breaker.send(MSG)
    assert (await breaker.send(MSG)).provider == "s"
    clock.advance(timedelta(seconds=31))
    # One probe of the primary fails: back to the secondary for another cooldown, no error to the caller.
    assert (await breaker.send(MSG)).provider == "s"
    assert primary.attempts == 3
    assert breaker.circuit_open


async def test_success_resets_the_consecutive_count(clock: SettableClock) -> None:
    breaker, primary, _ = make(clock, threshold=2)
    primary.script.extend([ProviderError("x", retryable=True, provider="p"), None])
    primary.fail(1)
    with pytest.raises(ProviderError):
        await breaker.send(MSG)
    assert (await breaker.send(MSG)).provider == "p"
    with pytest.raises(ProviderError):
        await breaker.send(MSG)  # only one failure in a row again: not open
    assert not breaker.circuit_open


async def test_permanent_failures_do_not_count_and_are_raised(clock: SettableClock) -> None:
    breaker, primary, secondary = make(clock, threshold=1)
    primary.fail(1, retryable=False)
    with pytest.raises(ProviderError) as err:
        await breaker.send(MSG)
    assert not err.value.retryable
    assert not breaker.circuit_open
    assert secondary.attempts == 0


async def test_secondary_failure_is_raised(clock: SettableClock) -> None:
    breaker, primary, secondary = make(clock, threshold=1)
    primary.fail(1)
    secondary.fail(1)
    with pytest.raises(ProviderError) as err:
        await breaker.send(MSG)
    assert err.value.provider == "s"


async def test_aclose_closes_both(clock: SettableClock) -> None:
    breaker, primary, secondary = make(clock)
    await breaker.aclose()
    assert primary.closed and secondary.closed


def test_threshold_must_be_positive(clock: SettableClock) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        make(clock, threshold=0)


def test_provider_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(ProviderError("SMTP 451 try later", retryable=True, provider="smtp")))
    assert (error.reason, error.retryable, error.provider) == ("SMTP 451 try later", True, "smtp")
    assert str(error) == "smtp: SMTP 451 try later"
