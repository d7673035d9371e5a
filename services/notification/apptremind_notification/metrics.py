"""The notification-service's own Prometheus metrics (the consumer and outbox ones come from the platform)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "notification_deliveries_total",
    "Dispatch outcomes: sent, skipped, failed, retry, duplicate",
    ["kind", "channel", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "notification_provider_send_seconds", "Time a provider took to accept (or refuse) a message", ["channel"]
)
WEBHOOKS = Counter(
    "notification_provider_webhooks_total",
    "Provider webhooks handled by the service: status, inbound; outcome ok or bad_signature",
    ["kind", "outcome"],
)
