"""How every consumer handles a message, whichever Kafka client delivered it (Faust agent or plain consumer).

For each message: continue the producer's trace, decode and check the envelope (poison goes straight to the
DLQ), then run the handler in one unit of work with the inbox claim, retrying failures with exponential
backoff and full jitter; after the last attempt the message goes to `<topic>.dlq` with the error in its
headers. Dead-lettering is itself an outbox write, so it is as durable as any other event.

A handler whose work cannot share the inbox transaction (sending an e-mail, calling a provider's HTTP API)
is wrapped in `SideEffect`: its `run` executes outside any transaction, between an inbox check and the inbox
claim, and must make itself idempotent, since a crash before the claim commits runs it again. A handler
may raise `Retryable` with a policy of its own (a provider's), which then replaces the processor's.

By default each message's inbox claim and handler get a unit of work of their own; a processor given a
`transact` (a group commit, say) runs them through it instead, so many messages can share one commit.

A handler whose effects for many messages are cheaper applied together (counters) is wrapped in `Batched`;
`process_many` then claims a whole batch in the inbox with one statement and applies it in one transaction
of its own (never through `transact`: a batch spans tenants, so it cannot take its locks in the order a
group commit's works do). Anything unusual about the batch (poison, a handler error, a lost connection)
rolls it back and every message goes through `process` on its own, with its own retries and dead-lettering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import random
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog
from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from . import inbox, outbox
from .db import Conn, unit_of_work
from .envelope import Decoded, EnvelopeError, decode
from .logs import get_logger
from .metrics import CONSUMER_DEAD_LETTERED, CONSUMER_DUPLICATES, CONSUMER_PROCESSED, CONSUMER_RETRIES
from .topics import DLQ_SUFFIX
from .tracing import extract_context

log = get_logger(__name__)
tracer = trace.get_tracer("apptremind.consumer")

DLQ_HEADER_PREFIX = "dlq-"
Handler = Callable[[Conn, Decoded], Awaitable[None]]
BatchHandler = Callable[[Conn, Sequence[Decoded]], Awaitable[None]]
_SEEN = "SELECT 1 FROM inbox WHERE consumer = %s AND message_id = %s"
T = TypeVar("T")


class Transactor(Protocol):
    """Runs `work` in a transaction and returns its result once that transaction has committed; raises
    (having rolled it back) when `work` or the commit fails. `key` names the tenant whose locks the work
    takes (its business), so that one transaction holding several works can take them in a fixed order."""

    def __call__(self, work: Callable[[Conn], Awaitable[T]], /, key: str = "") -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class SideEffect:
    """A handler with an effect outside the database: `run(decoded)` is called outside any transaction
    (it opens its own), only for a message the inbox has not recorded; then the inbox claim commits,
    together with `then(conn, decoded)` when given. `run` is retried and dead-lettered like any handler."""

    run: Callable[[Decoded], Awaitable[None]]
    then: Handler | None = None
    # False when `run` dedupes by itself (e.g. a row keyed by the message's idempotency key that records
    # what was done): the inbox read before `run` is then one round trip per message that buys nothing.
    # A redelivered message still ends as DUPLICATE at the inbox claim.
    checks_inbox: bool = True


@dataclass(frozen=True, slots=True)
class Batched:
    """A handler that can apply many messages at once: `apply(conn, decoded_messages)` with the same
    effect as `one` applied to each of them in turn (`one` is what a message retried alone gets)."""

    one: Handler
    apply: BatchHandler


async def _nothing(conn: Conn, decoded: Decoded) -> None:
    return None


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help (bad data): the message goes to the DLQ at once."""


class Outcome(enum.Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        # Full jitter: spreads retries of many consumers hitting the same fault.
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


class Retryable(Exception):
    """Raised by a handler for a failure that knows its own retry policy (e.g. the provider that failed
    has one of its own); other exceptions are retried under the processor's policy."""

    def __init__(self, message: str, policy: RetryPolicy | None = None) -> None:
        super().__init__(message)
        self.policy = policy


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class MessageProcessor:
    consumer: str
    source: str
    pool: AsyncConnectionPool
    handlers: Mapping[str, Handler | SideEffect | Batched]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Where the inbox claim and the handler run; None: a unit of work of their own per message.
    transact: Transactor | None = None

    @property
    def topics(self) -> list[str]:
        return list(self.handlers)

    async def process(self, msg: Incoming) -> Outcome:
        with (
            tracer.start_as_current_span(
                f"consume {msg.topic}", context=extract_context(msg.headers), kind=trace.SpanKind.CONSUMER
            ),
            structlog.contextvars.bound_contextvars(topic=msg.topic, offset=msg.offset),
        ):
            try:
                decoded = decode(msg.topic, msg.value)
            except EnvelopeError as exc:
                await self._dead_letter(msg, exc, attempts=0)
                return Outcome.DEAD_LETTERED
            with structlog.contextvars.bound_contextvars(
                message_id=decoded.envelope.id, business_id=decoded.envelope.business_id
            ):
                return await self._handle(msg, decoded)

    async def process_many(self, msgs: Sequence[Incoming]) -> list[Outcome]:
        """Every message processed, the ones of `Batched` topics together in one transaction with one
        inbox statement; the outcomes in the order of `msgs`."""
        outcomes: list[Outcome | None] = [None] * len(msgs)
        batch: dict[str, tuple[int, Decoded]] = {}
        alone: list[int] = []
        for index, msg in enumerate(msgs):
            if not isinstance(self.handlers.get(msg.topic), Batched):
                alone.append(index)
                continue
            try:
                decoded = decode(msg.topic, msg.value)
            except EnvelopeError:
                alone.append(index)  # dead-lettered there, with the usual trace and log
                continue
            if decoded.envelope.id in batch:
                # A second copy of a message in one batch: the first claims it, this one is a duplicate.
                outcomes[index] = Outcome.DUPLICATE
                CONSUMER_DUPLICATES.labels(self.consumer, msg.topic).inc()
                continue
            batch[decoded.envelope.id] = (index, decoded)
        if batch:
            with tracer.start_as_current_span(
                f"consume batch {self.consumer}",
                kind=trace.SpanKind.CONSUMER,
                attributes={"size": len(batch)},
            ):
                try:
                    claimed = await self._claim_and_apply_many([decoded for _, decoded in batch.values()])
                except Exception as exc:
                    log.warning("batch_failed", consumer=self.consumer, size=len(batch), error=repr(exc))
                    alone.extend(index for index, _ in batch.values())
                else:
                    for message_id, (index, decoded) in batch.items():
                        fresh = message_id in claimed
                        outcomes[index] = Outcome.PROCESSED if fresh else Outcome.DUPLICATE
                        counter = CONSUMER_PROCESSED if fresh else CONSUMER_DUPLICATES
                        counter.labels(self.consumer, decoded.envelope.type).inc()
        results = await asyncio.gather(*(self.process(msgs[index]) for index in alone))
        for index, outcome in zip(alone, results, strict=True):
            outcomes[index] = outcome
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(msgs), "a message of the batch was left without an outcome"
        return done

    async def _claim_and_apply_many(self, batch: list[Decoded]) -> set[str]:
        """The inbox claims of `batch` and its Batched handlers' effects in one transaction; the ids of the
        messages applied (the others were already in the inbox). Each handler gets all of its messages in
        one call (topics may share one), so it can take its locks in an order of its own."""
        async with unit_of_work(self.pool) as conn:
            claimed = await inbox.claim_many(conn, self.consumer, [d.envelope.id for d in batch])
            by_handler: dict[int, tuple[Batched, list[Decoded]]] = {}
            for decoded in batch:
                if decoded.envelope.id in claimed:
                    entry = self.handlers[decoded.envelope.type]  # the topic: `decode` checks they match
                    assert isinstance(entry, Batched)
                    by_handler.setdefault(id(entry), (entry, []))[1].append(decoded)
            for entry, decodeds in by_handler.values():
                await entry.apply(conn, decodeds)
            return claimed

    async def _handle(self, msg: Incoming, decoded: Decoded) -> Outcome:
        entry = self.handlers[msg.topic]
        if isinstance(entry, Batched):
            entry = entry.one
        handler = entry if not isinstance(entry, SideEffect) else entry.then or _nothing
        attempt = 0
        while True:
            attempt += 1
            try:
                if isinstance(entry, SideEffect):
                    if entry.checks_inbox and await self._seen(decoded.envelope.id):
                        CONSUMER_DUPLICATES.labels(self.consumer, msg.topic).inc()
                        return Outcome.DUPLICATE
                    await entry.run(decoded)
                if not await self._claim_and_apply(handler, decoded):
                    CONSUMER_DUPLICATES.labels(self.consumer, msg.topic).inc()
                    return Outcome.DUPLICATE
                CONSUMER_PROCESSED.labels(self.consumer, msg.topic).inc()
                return Outcome.PROCESSED
            except PermanentError as exc:
                await self._dead_letter(msg, exc, attempts=attempt)
                return Outcome.DEAD_LETTERED
            except Exception as exc:
                policy = exc.policy if isinstance(exc, Retryable) and exc.policy else self.policy
                if attempt >= policy.max_attempts:
                    await self._dead_letter(msg, exc, attempts=attempt)
                    return Outcome.DEAD_LETTERED
                CONSUMER_RETRIES.labels(self.consumer, msg.topic).inc()
                delay = policy.delay(attempt)
                log.warning("handler_failed", attempt=attempt, retry_in_s=round(delay, 3), error=repr(exc))
                await self.sleep(delay)

    async def _claim_and_apply(self, handler: Handler, decoded: Decoded) -> bool:
        """The inbox claim and the handler in one transaction; False (and nothing applied) for a message
        the inbox already holds."""

        async def work(conn: Conn) -> bool:
            if not await inbox.claim(conn, self.consumer, decoded.envelope.id):
                return False
            await handler(conn, decoded)
            return True

        if self.transact is not None:
            return await self.transact(work, key=decoded.envelope.business_id)
        async with unit_of_work(self.pool) as conn:
            return await work(conn)

    async def _seen(self, message_id: str) -> bool:
        async with unit_of_work(self.pool) as conn, conn.cursor() as cur:
            await cur.execute(_SEEN, (self.consumer, message_id))
            return await cur.fetchone() is not None

    async def _dead_letter(self, msg: Incoming, exc: BaseException, attempts: int) -> None:
        headers = {
            k: v.decode(errors="replace") for k, v in msg.headers if not k.startswith(DLQ_HEADER_PREFIX)
        }
        headers.update(
            {
                "dlq-error": str(exc)[:1000] or type(exc).__name__,
                "dlq-error-type": type(exc).__name__,
                "dlq-stack": "".join(traceback.format_exception(exc))[-4000:],
                "dlq-attempts": str(attempts),
                "dlq-consumer": self.consumer,
                "dlq-original-topic": msg.topic,
                "dlq-original-partition": str(msg.partition),
                "dlq-original-offset": str(msg.offset),
                "dlq-failed-at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )
        key = (msg.key or b"").decode(errors="replace")
        # Retries here guard only against the database blipping; if it stays down the consumer stops
        # without committing the offset, and the message is delivered again later.
        async with unit_of_work(self.pool) as conn:
            await outbox.add_raw(conn, msg.topic + DLQ_SUFFIX, key, msg.value or b"", headers)
        CONSUMER_DEAD_LETTERED.labels(self.consumer, msg.topic).inc()
        log.error("dead_lettered", error=str(exc), attempts=attempts, dlq=msg.topic + DLQ_SUFFIX)
