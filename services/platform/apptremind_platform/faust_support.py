"""Faust agents follow the same consumer conventions as plain consumers: each event goes through a
MessageProcessor (inbox dedupe, retries with backoff and jitter, DLQ, trace context).

We use Faust's at-least-once processing (offsets committed after the agent finishes an event), not its
`exactly_once` guarantee, which has open duplicate and fencing bugs (faust-streaming #323, #517).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .processing import Incoming, MessageProcessor, Outcome


def raw_topics(app: Any, processor: MessageProcessor) -> Any:
    """The Faust topic for the processor's topics, delivering raw bytes (we decode the envelope ourselves)."""
    return app.topic(
        *processor.topics, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
    )


def processing_agent(processor: MessageProcessor) -> Callable[[Any], AsyncIterator[Outcome]]:
    """Body for `app.agent(raw_topics(app, processor))`: yields each message's outcome."""

    async def agent(stream: Any) -> AsyncIterator[Outcome]:
        async for event in stream.events():
            message = event.message
            yield await processor.process(
                Incoming(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    headers=[(k, v) for k, v in (message.headers or [])],
                )
            )

    return agent
