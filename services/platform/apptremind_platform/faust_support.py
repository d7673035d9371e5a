"""Faust agents follow the same consumer conventions as plain consumers: each event goes through a
MessageProcessor (inbox dedupe, retries with backoff and jitter, DLQ, trace context).

We use Faust's at-least-once processing (offsets committed after the agent finishes an event), not its
`exactly_once` guarantee, which has open duplicate and fencing bugs (faust-streaming #323, #517).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .processing import Incoming, MessageProcessor, Outcome


def raw_topic(app: Any, *names: str) -> Any:
    """A Faust topic that delivers raw bytes: the platform decodes and checks the envelope itself."""
    return app.topic(*names, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")


def incoming(event: Any) -> Incoming:
    """The client-independent record of a Faust event."""
    message = event.message
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=list(message.headers or []),
    )


def processing_agent(processor: MessageProcessor) -> Callable[[Any], AsyncIterator[Outcome]]:
    """Body for `app.agent(raw_topic(app, *processor.topics))`: yields each message's outcome."""

    async def agent(stream: Any) -> AsyncIterator[Outcome]:
        async for event in stream.events():
            yield await processor.process(incoming(event))

    return agent
