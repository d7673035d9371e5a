"""The edge's own GetAvailabilityResponse decoder gives what betterproto2 gives, for any slots."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from apptremind_edge.wire import WireError, decode_availability
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.common.v1 import Money

UTC = dt.UTC


def as_tuples(message: pb.GetAvailabilityResponse) -> list[tuple[object, ...]]:
    return [(s.start_time, s.end_time, s.staff_id, s.local_start) for s in message.slots]


def test_random_answers_decode_as_betterproto2_decodes_them() -> None:
    rng = random.Random(4)
    for _ in range(200):
        slots = []
        for _ in range(rng.randrange(0, 30)):
            start = dt.datetime(1960, 1, 1, tzinfo=UTC) + dt.timedelta(
                seconds=rng.randrange(0, 3_000_000_000),
                microseconds=rng.choice([0, rng.randrange(1_000_000)]),
            )
            slots.append(
                pb.Slot(
                    # Unset timestamps, the epoch itself (all-default fields) and empty strings included.
                    start_time=rng.choice([start, None, dt.datetime(1970, 1, 1, tzinfo=UTC)]),
                    end_time=rng.choice([start + dt.timedelta(minutes=rng.randrange(1, 600)), None]),
                    staff_id=rng.choice(["", "0193c1a0-0000-7000-8000-00000000000a", "Zoë ✂"]),
                    local_start=rng.choice(["", start.isoformat()]),
                )
            )
        wire = bytes(pb.GetAvailabilityResponse(slots=slots))
        assert decode_availability(wire) == as_tuples(pb.GetAvailabilityResponse.FromString(wire))


def test_unknown_fields_are_skipped() -> None:
    slot = pb.Slot(start_time=dt.datetime(2027, 1, 4, 9, tzinfo=UTC), staff_id="s", local_start="x")
    known = bytes(pb.GetAvailabilityResponse(slots=[slot]))
    # Fields a later contract might add: a varint, a fixed64, a message and a fixed32, at both levels.
    extra = bytes(Money(amount_minor=1500, currency="EUR"))
    unknown = (
        b"\x28\x96\x01" + b"\x31" + bytes(8) + b"\x3a" + bytes([len(extra)]) + extra + b"\x45" + bytes(4)
    )
    inner = bytes(slot) + unknown
    wire = b"\x0a" + bytes([len(inner)]) + inner + unknown
    assert (
        decode_availability(wire)
        == decode_availability(known)
        == as_tuples(pb.GetAvailabilityResponse.FromString(known))
    )


@pytest.mark.parametrize("wire", [b"\x0a\x05\x0a", b"\x0a", b"\x08\x80", b"\x0f"])
def test_malformed_bytes_are_refused(wire: bytes) -> None:
    with pytest.raises(WireError):
        decode_availability(wire)
