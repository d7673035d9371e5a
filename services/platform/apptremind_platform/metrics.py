"""Prometheus metrics of the platform's mechanisms (outbox relay, consumers), defined once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox rows acknowledged by Kafka", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total",
    "Relay batches rolled back because Kafka did not acknowledge",
    ["service"],
)
OUTBOX_PENDING = Gauge("outbox_pending_rows", "Unpublished outbox rows", ["service"])
OUTBOX_LAG = Gauge("outbox_lag_seconds", "Age of the oldest unpublished outbox row", ["service"])
OUTBOX_PRUNED = Counter("outbox_pruned_total", "Published outbox rows deleted", ["service"])
OUTBOX_BATCH_SECONDS = Histogram(
    "outbox_batch_seconds", "Time to read, publish, acknowledge and mark one batch", ["service"]
)

CONSUMER_PROCESSED = Counter("consumer_processed_total", "Messages handled", ["consumer", "topic"])
CONSUMER_DUPLICATES = Counter(
    "consumer_duplicates_total", "Messages skipped by the inbox", ["consumer", "topic"]
)
CONSUMER_RETRIES = Counter(
    "consumer_retries_total", "Handler attempts that failed and were retried", ["consumer", "topic"]
)
CONSUMER_DEAD_LETTERED = Counter(
    "consumer_dead_lettered_total", "Messages sent to the DLQ", ["consumer", "topic"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag_messages", "Messages behind the partition's end", ["consumer", "topic", "partition"]
)
