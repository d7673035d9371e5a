"""The envelope: what goes in comes out typed; what cannot be processed is rejected as poison."""

from __future__ import annotations

import pytest

from apptremind_gen.apptremind.events.booking.v1 import AppointmentBooked, ReminderCancelled
from apptremind_gen.apptremind.events.v1 import Envelope
from apptremind_platform.envelope import EnvelopeError, Event, decode, encode, headers_for
from apptremind_platform.topics import TOPICS, spec_for

BOOKED = "booking.appointment.booked.v1"


def test_round_trip_keeps_every_cloudevents_field() -> None:
    event = Event(
        BOOKED, "biz-1", AppointmentBooked(business_id="biz-1", appointment_id="a-1"), subject="a-1"
    )
    decoded = decode(BOOKED, encode(event, source="booking", trace_id="ab" * 16))
    env = decoded.envelope
    assert (env.id, env.type, env.source, env.specversion) == (
        str(event.id),
        BOOKED,
        "apptremind/booking",
        "1.0",
    )
    assert (env.subject, env.datacontenttype, env.trace_id) == ("a-1", "application/protobuf", "ab" * 16)
    assert (env.version, env.business_id) == (1, "biz-1")
    assert env.time is not None
    assert decoded.data == AppointmentBooked(business_id="biz-1", appointment_id="a-1")
    assert headers_for(event)["ce_id"] == str(event.id)


def test_encode_refuses_a_payload_of_the_wrong_type() -> None:
    with pytest.raises(TypeError):
        encode(Event(BOOKED, "b", ReminderCancelled(business_id="b")), source="booking")


def test_encode_refuses_an_undeclared_topic() -> None:
    with pytest.raises(KeyError):
        encode(Event("booking.nope.v1", "b", AppointmentBooked()), source="booking")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: setattr(e, "version", 2), "unsupported major version 2"),
        (lambda e: setattr(e, "type", "booking.reminder.cancelled.v1"), "envelope type"),
        (lambda e: setattr(e, "id", ""), "no id"),
        (lambda e: setattr(e, "data", None), "no data"),
    ],
)
def test_decode_rejects_poison(mutate: object, message: str) -> None:
    env = Envelope.parse(encode(Event(BOOKED, "b", AppointmentBooked(business_id="b")), source="t"))
    assert callable(mutate)
    mutate(env)
    with pytest.raises(EnvelopeError, match=message):
        decode(BOOKED, bytes(env))


def test_decode_rejects_garbage_and_empty() -> None:
    with pytest.raises(EnvelopeError):
        decode(BOOKED, b"")
    with pytest.raises(EnvelopeError):
        decode(BOOKED, b"\xff\xff\xff\xff")


def test_payload_of_another_type_is_poison() -> None:
    env = Envelope.parse(encode(Event(BOOKED, "b", AppointmentBooked(business_id="b")), source="t"))
    from apptremind_gen.google.protobuf import Any as AnyMessage

    env.data = AnyMessage.pack(ReminderCancelled(business_id="b"))
    with pytest.raises(EnvelopeError, match="expected AppointmentBooked"):
        decode(BOOKED, bytes(env))


def test_every_topic_follows_the_naming_convention() -> None:
    for name, spec in TOPICS.items():
        parts = name.split(".")
        assert parts[-1] == f"v{spec.version}"
        assert len(parts) >= 3
        assert spec.dlq == name + ".dlq"
        assert spec_for(name) is spec
