"""Retry delays after a failed publish, and the settings that bound them."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from apptremind_scheduler.backoff import Backoff
from apptremind_scheduler.settings import SchedulerSettings


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    b = Backoff(base_s=0.5, max_s=10.0, max_attempts=10)
    assert [b.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert Backoff(base_s=1.0, max_s=300.0).ceiling(10_000) == 300.0


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().ceiling(0)


def test_delays_are_jittered_over_the_whole_window() -> None:
    b = Backoff(base_s=1.0, max_s=60.0)
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    # Full jitter: spread over [0, ceiling], not bunched at the ceiling.
    assert min(delays) < 0.2 and max(delays) > 3.8
    assert len({round(d, 6) for d in delays}) > 1900


def test_a_job_is_exhausted_at_max_attempts() -> None:
    b = Backoff(max_attempts=3)
    assert [b.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_settings_refuse_a_lease_shorter_than_the_publish_timeout() -> None:
    with pytest.raises(ValidationError, match="scheduler_lease_s"):
        SchedulerSettings(scheduler_lease_s=5.0, scheduler_publish_timeout_s=5.0)
    assert SchedulerSettings(scheduler_lease_s=6.0, scheduler_publish_timeout_s=5.0).scheduler_lease_s == 6.0


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SCHEDULER_WORKERS", "5")
    monkeypatch.setenv("APPTREMIND_SCHEDULER_BATCH_SIZE", "1000")
    monkeypatch.setenv("APPTREMIND_SCHEDULER_IDLE_POLL_S", "0.05")
    s = SchedulerSettings()
    assert (s.scheduler_workers, s.scheduler_batch_size, s.scheduler_idle_poll_s) == (5, 1000, 0.05)
