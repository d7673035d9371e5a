"""The scheduler-service's settings: the platform's plus the engine's knobs (APPTREMIND_SCHEDULER_*)."""

from __future__ import annotations

from pydantic import Field, model_validator

from apptremind_platform.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    service_name: str = "scheduler"
    # Worker tasks per process; every process runs its own, they share the job table safely.
    scheduler_workers: int = Field(default=2, ge=1)
    # Jobs one worker claims (and publishes) per round trip.
    scheduler_batch_size: int = Field(default=500, ge=1)
    # How long a claim is exclusive; a worker that dies holds its jobs no longer than this.
    scheduler_lease_s: float = Field(default=30.0, gt=0)
    # Publish attempts before a job is marked failed.
    scheduler_max_attempts: int = Field(default=10, ge=1)
    # Backoff between publish attempts: base * 2^(attempt-1), capped, with full jitter.
    scheduler_backoff_base_s: float = Field(default=0.5, gt=0)
    scheduler_backoff_max_s: float = Field(default=300.0, gt=0)
    # The longest an idle worker sleeps before looking again (jobs scheduled by another process, or due
    # sooner than the worker knew). Jobs this process schedules wake its workers at once.
    scheduler_idle_poll_s: float = Field(default=0.1, gt=0)
    # How long Kafka may take to acknowledge one batch before its jobs count as a failed attempt.
    scheduler_publish_timeout_s: float = Field(default=15.0, gt=0)
    # How often expired leases are reclaimed.
    scheduler_reclaim_interval_s: float = Field(default=1.0, gt=0)
    # Completed and cancelled jobs (and cancel tombstones) are deleted this long after they finished.
    scheduler_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    scheduler_prune_interval_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_publish(self) -> SchedulerSettings:
        # A lease that can expire while its worker still waits for Kafka would let a second worker emit
        # the same jobs in normal operation.
        if self.scheduler_lease_s <= self.scheduler_publish_timeout_s:
            raise ValueError("scheduler_lease_s must be longer than scheduler_publish_timeout_s")
        return self
