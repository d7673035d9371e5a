"""Encodes a claimed job's due event: the platform's CloudEvents envelope around a JobDue.

The envelope is byte-for-byte the wire format `apptremind_platform.envelope.encode` produces (same
descriptors, same fields), but built with the protobuf runtime's C (upb) message classes for those
descriptors instead of the generated pure-Python classes: encoding is the workers' hot path, and the pure
Python serializer costs a few hundred microseconds per event, more than everything else a worker does for a
job. tests/unit/scheduler checks that both encoders' output decodes to the same envelope and event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from google.protobuf import message_factory  # type: ignore[import-untyped]

from apptremind_gen.apptremind.events.scheduler.v1 import JobDue
from apptremind_gen.apptremind.events.v1 import Envelope
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform.envelope import CONTENT_TYPE, SPECVERSION
from apptremind_platform.topics import spec_for

_ENVELOPE: Any = message_factory.GetMessageClass(Envelope.DESCRIPTOR)
_JOB_DUE: Any = message_factory.GetMessageClass(JobDue.DESCRIPTOR)
_JOB_DUE_TYPE_URL = AnyMessage.pack(JobDue()).type_url


def encode_due(
    topic: str,
    job_id: uuid.UUID,
    business_id: uuid.UUID,
    idempotency_key: str,
    due_at: dt.datetime,
    payload_type_url: str,
    payload: bytes,
    subject: str,
    source: str,
    when: dt.datetime | None = None,
) -> bytes:
    spec = spec_for(topic)
    if spec.payload is not JobDue:
        raise TypeError(f"{topic} carries {spec.payload.__name__}, not JobDue")
    event = _JOB_DUE(job_id=str(job_id), business_id=str(business_id), idempotency_key=idempotency_key)
    event.due_at.FromDatetime(due_at)
    if payload_type_url:
        event.payload.type_url = payload_type_url
        event.payload.value = payload
    envelope = _ENVELOPE(
        id=str(job_id),
        type=topic,
        source=f"apptremind/{source}",
        specversion=SPECVERSION,
        subject=subject,
        datacontenttype=CONTENT_TYPE,
        version=spec.version,
        business_id=str(business_id),
    )
    envelope.time.FromDatetime(when or dt.datetime.now(dt.UTC))
    envelope.data.type_url = _JOB_DUE_TYPE_URL
    envelope.data.value = event.SerializeToString(deterministic=True)
    data: bytes = envelope.SerializeToString(deterministic=True)
    return data
