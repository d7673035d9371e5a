"""The CloudEvents envelope (structured mode, protobuf format) that every Kafka message carries.

`Event` is what services hand to the outbox; `encode` turns it into Kafka key, value and headers, and
`decode` turns a consumed value back into the envelope and its typed payload.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import betterproto2

from apptremind_gen.apptremind.events.v1 import Envelope
from apptremind_gen.google.protobuf import Any as AnyMessage

from .ids import new_id
from .topics import spec_for

SPECVERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
HEADER_CONTENT_TYPE = "content-type"
KAFKA_CONTENT_TYPE = "application/cloudevents+protobuf"
HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"


class EnvelopeError(ValueError):
    """A message that can never be processed as it is (poison): bad bytes, unknown type or major version."""


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    business_id: str
    data: betterproto2.Message
    subject: str = ""
    id: uuid.UUID = field(default_factory=new_id)
    # The Kafka key; business_id unless the event belongs to no business (then e.g. the user's id, so
    # such events still spread over partitions and keep per-entity order).
    key: str = ""

    @property
    def partition_key(self) -> str:
        return self.key or self.business_id


@dataclass(frozen=True, slots=True)
class Decoded:
    envelope: Envelope
    data: betterproto2.Message


def encode(event: Event, source: str, trace_id: str = "", when: dt.datetime | None = None) -> bytes:
    spec = spec_for(event.topic)
    if not isinstance(event.data, spec.payload):
        raise TypeError(f"{event.topic} carries {spec.payload.__name__}, not {type(event.data).__name__}")
    envelope = Envelope(
        id=str(event.id),
        type=event.topic,
        source=f"apptremind/{source}",
        time=when or dt.datetime.now(dt.UTC),
        specversion=SPECVERSION,
        subject=event.subject,
        datacontenttype=CONTENT_TYPE,
        trace_id=trace_id,
        data=AnyMessage.pack(event.data),
        version=spec.version,
        business_id=event.business_id,
    )
    return bytes(envelope)


def headers_for(event: Event) -> dict[str, str]:
    return {HEADER_ID: str(event.id), HEADER_TYPE: event.topic, HEADER_CONTENT_TYPE: KAFKA_CONTENT_TYPE}


def decode(topic: str, value: bytes | None) -> Decoded:
    """Parse and check a consumed message; raises EnvelopeError for anything that retrying cannot fix."""
    if not value:
        raise EnvelopeError("empty message")
    try:
        envelope = Envelope.parse(value)
    except Exception as exc:
        raise EnvelopeError(f"not an envelope: {exc}") from exc
    try:
        spec = spec_for(topic)
    except KeyError as exc:
        raise EnvelopeError(str(exc)) from exc
    if envelope.type != topic:
        raise EnvelopeError(f"envelope type {envelope.type!r} on topic {topic!r}")
    if envelope.version != spec.version:
        raise EnvelopeError(
            f"unsupported major version {envelope.version} on {topic} (expected {spec.version})"
        )
    if not envelope.id:
        raise EnvelopeError("envelope has no id")
    if envelope.data is None:
        raise EnvelopeError("envelope has no data")
    try:
        data = envelope.data.unpack()
    except Exception as exc:
        raise EnvelopeError(f"payload does not parse: {exc}") from exc
    if not isinstance(data, spec.payload):
        raise EnvelopeError(f"payload {type(data).__name__} on {topic} (expected {spec.payload.__name__})")
    return Decoded(envelope, data)
