"""Prometheus metrics of the job engine."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS_SCHEDULED = Counter("scheduler_jobs_scheduled_total", "Jobs created", ["via"])
JOBS_CANCELLED = Counter("scheduler_jobs_cancelled_total", "Jobs cancelled (tombstones included)", ["via"])
JOBS_CLAIMED = Counter("scheduler_jobs_claimed_total", "Jobs claimed by a worker under a lease")
JOBS_EMITTED = Counter("scheduler_jobs_emitted_total", "Due events acknowledged by Kafka and jobs completed")
JOBS_RETRIED = Counter("scheduler_jobs_retried_total", "Failed publishes that will be retried")
JOBS_FAILED = Counter("scheduler_jobs_failed_total", "Jobs marked failed after their last attempt")
JOBS_RECLAIMED = Counter("scheduler_jobs_reclaimed_total", "Running jobs whose lease expired, made claimable")
JOBS_PRUNED = Counter("scheduler_jobs_pruned_total", "Completed and cancelled jobs deleted")
LATENESS = Histogram(
    "scheduler_lateness_seconds",
    "Kafka acknowledgement of the due event minus the job's due time (database clock)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
