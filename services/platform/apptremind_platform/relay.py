"""The outbox relay: publishes committed outbox rows to Kafka in id order, then marks and prunes them.

Correctness rests on three rules (docs/adr/0004-outbox-relay.md):
- one relay publishes at a time: each batch runs inside a transaction that holds the row lock on
  `outbox_relay_lock` (FOR UPDATE SKIP LOCKED), so a second relay idles until the first dies or stops;
- a batch is all-or-nothing: it is marked published only after Kafka acknowledged every message in it
  (acks=all, idempotent producer keeps per-partition order); otherwise the transaction rolls back and the
  same rows are sent again, so a broker outage delays events and never loses or reorders them;
- rows of one key are committed in id order (outbox.add takes a per-key lock), so id order is commit
  order per key.
Duplicates are possible after a crash between Kafka's ack and the commit; consumers dedupe via the inbox.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from .logs import get_logger
from .metrics import (
    OUTBOX_BATCH_SECONDS,
    OUTBOX_LAG,
    OUTBOX_PENDING,
    OUTBOX_PRUNED,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
)

log = get_logger(__name__)

_LOCK = "SELECT name FROM outbox_relay_lock WHERE name = 'relay' FOR UPDATE SKIP LOCKED"
_BATCH = "SELECT id, topic, key, payload, headers FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %s"
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)"
_PRUNE = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - %s LIMIT 10000)"
_PRUNE_INBOX = (
    "DELETE FROM inbox WHERE (consumer, message_id) IN "
    "(SELECT consumer, message_id FROM inbox WHERE processed_at < now() - %s LIMIT 10000)"
)
_STATS = (
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
    "FROM outbox WHERE published_at IS NULL"
)


class PublishFailed(RuntimeError):
    pass


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        # librdkafka keeps retrying inside this window; the relay's own flush timeout is shorter.
        "message.timeout.ms": 30000,
        "queue.buffering.max.messages": 200000,
    }
    config.update(overrides)
    return config


def delivery_failure(err: KafkaError | None, message: Message) -> str | None:
    """Why one delivery report does not prove the message is in the log, or None when it does.

    A report without an offset is not treated as a write. librdkafka "implicitly acks" a partition's
    earlier in-flight batch when a later one succeeds, reasoning that the broker checks sequence order,
    but a broker with no state for the producer on that partition (a topic just created, a new leader)
    accepts the later batch even though it refused the earlier one. The earlier messages are then reported
    delivered, with no offset, and were never written (traced in ADR 0009; librdkafka #4134 reports drops
    of this kind).
    Publishing them again may duplicate one that was written after all; it carries the same event id, and
    consumers dedupe on it.
    """
    if err is not None:
        return str(err.str())
    offset = message.offset()
    if offset is None or offset < 0:
        return "reported delivered without an offset (implicitly acknowledged), so not known to be written"
    return None


@dataclass
class RelaySettings:
    service: str
    dsn: str
    bootstrap_servers: str
    batch_size: int = 5000
    idle_sleep_s: float = 0.05
    flush_timeout_s: float = 10.0
    retention: dt.timedelta = dt.timedelta(hours=1)
    inbox_retention: dt.timedelta = dt.timedelta(days=8)
    prune_every_s: float = 30.0
    stats_every_s: float = 1.0
    producer_overrides: dict[str, Any] = field(default_factory=dict)


class OutboxRelay:
    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self._producer: Producer | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._last_prune = 0.0
        self._last_stats = 0.0
        self.healthy = False

    # -- resources -----------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.settings.dsn, prepare_threshold=None, connect_timeout=5)
        return self._conn

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                producer_config(self.settings.bootstrap_servers, **self.settings.producer_overrides)
            )
        return self._producer

    def _drop_producer(self) -> None:
        # After a failed batch a fresh producer starts a new idempotence epoch instead of carrying
        # half-delivered state into the retry.
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
        self._producer = None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.settings.flush_timeout_s)
            self._producer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- one batch -----------------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish one batch. Returns rows published, 0 when idle, -1 when another relay holds the lock."""
        conn = self._connection()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor(binary=True) as cur:
            cur.execute(_LOCK)
            if cur.fetchone() is None:
                return -1
            cur.execute(_BATCH, (self.settings.batch_size,))
            rows = cur.fetchall()
            if not rows:
                return 0
            errors = self._produce(rows)
            # Marking while librdkafka waits for acks overlaps the two round trips; the mark commits only
            # if every ack arrives (else _await_acks raises and the transaction rolls back).
            cur.execute(_MARK, ([row[0] for row in rows],))
            self._await_acks(errors)
        OUTBOX_PUBLISHED.labels(self.settings.service).inc(len(rows))
        OUTBOX_BATCH_SECONDS.labels(self.settings.service).observe(time.perf_counter() - started)
        return len(rows)

    def _produce(self, rows: list[tuple[Any, ...]]) -> list[str]:
        producer = self._get_producer()
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, message: Message) -> None:
            failure = delivery_failure(err, message)
            if failure is not None:
                errors.append(failure)

        for _id, topic, key, payload, headers in rows:
            while True:
                try:
                    producer.produce(
                        topic,
                        value=bytes(payload),
                        key=key.encode(),
                        headers=[(k, v.encode()) for k, v in headers.items()],
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        return errors

    def _await_acks(self, errors: list[str]) -> None:
        remaining = self._get_producer().flush(self.settings.flush_timeout_s)
        if remaining or errors:
            OUTBOX_PUBLISH_FAILURES.labels(self.settings.service).inc()
            self._drop_producer()
            first = errors[0] if errors else f"{remaining} messages unacknowledged"
            raise PublishFailed(f"Kafka did not acknowledge the batch: {first}")

    # -- housekeeping --------------------------------------------------------------------------------
    def prune(self) -> int:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_PRUNE, (self.settings.retention,))
            pruned = cur.rowcount
            cur.execute(_PRUNE_INBOX, (self.settings.inbox_retention,))
        OUTBOX_PRUNED.labels(self.settings.service).inc(pruned)
        return pruned

    def refresh_stats(self) -> tuple[int, float]:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_STATS)
            row = cur.fetchone()
        pending, lag = (int(row[0]), float(row[1])) if row else (0, 0.0)
        OUTBOX_PENDING.labels(self.settings.service).set(pending)
        OUTBOX_LAG.labels(self.settings.service).set(lag)
        return pending, lag

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                published = self.publish_batch()
                now = time.monotonic()
                if now - self._last_stats >= self.settings.stats_every_s:
                    self._last_stats = now
                    self.refresh_stats()
                if now - self._last_prune >= self.settings.prune_every_s:
                    self._last_prune = now
                    self.prune()
                self.healthy = True
                backoff = 0.1
                if published <= 0:
                    stop.wait(self.settings.idle_sleep_s)
            except (PublishFailed, psycopg.Error) as exc:
                self.healthy = False
                log.warning("relay_batch_failed", error=str(exc), retry_in_s=backoff)
                if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
                    self._conn.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.close()
