"""Faust agents follow the same consumer conventions as plain consumers: an agent reads a raw topic and hands
each event, as `incoming(event)`, to a MessageProcessor (inbox dedupe, retries with backoff and jitter,
DLQ, trace context); tests/fixtures/faust_probe_app.py is the worked example.

We use Faust's at-least-once processing (offsets committed after the agent finishes an event), not its
`exactly_once` guarantee, which has open duplicate and fencing bugs (faust-streaming #323, #517).
"""

from __future__ import annotations

from typing import Any

from .processing import Incoming


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
