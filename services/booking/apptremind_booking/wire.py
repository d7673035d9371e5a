"""GetAvailabilityResponse encoded from memoised per-slot wire forms.

betterproto2 encodes in pure Python, about a tenth of a millisecond per slot: for a cached availability
answer that was most of the service's CPU per request, and for a free 14-day calendar (over a thousand
slots) over a hundred milliseconds. A repeated message field is, on the wire, each element's bytes with
its tag and length in front, so the response is the concatenation of the slots' encodings; each is
encoded once by betterproto2 itself and reused while the slot keeps being asked for.
"""

from __future__ import annotations

import datetime as dt

from apptremind_gen.apptremind.booking import v1 as pb

from .availability import Slot

# Field 1 (`repeated Slot slots = 1`), wire type 2 (length-delimited).
_SLOTS_TAG = bytes([1 << 3 | 2])
DEFAULT_MAX_SLOTS = 100_000


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def slot_message(slot: Slot, label: str) -> pb.Slot:
    return pb.Slot(start_time=slot.start, end_time=slot.end, staff_id=slot.staff_id, local_start=label)


# The generated classes are untyped to mypy (gen/ is not type-checked), hence the ignore.
class EncodedAvailability(pb.GetAvailabilityResponse):  # type: ignore[misc]
    """A GetAvailabilityResponse that already knows its wire form (what the gRPC bridge sends)."""

    def __init__(self, wire: bytes) -> None:
        super().__init__()
        object.__setattr__(self, "_wire", wire)

    def __bytes__(self) -> bytes:
        wire: bytes = object.__getattribute__(self, "_wire")
        return wire


class SlotEncoder:
    """Memoises each slot's encoding: a pure function of the slot and its label, so reuse is always exact.

    Bounded: when full it starts over, which only costs re-encoding what is asked for next.
    """

    def __init__(self, max_slots: int = DEFAULT_MAX_SLOTS) -> None:
        self._max_slots = max_slots
        self._encoded: dict[tuple[dt.datetime, dt.datetime, str, str], bytes] = {}

    def response(self, slots: list[tuple[Slot, str]]) -> EncodedAvailability:
        parts = []
        for slot, label in slots:
            key = (slot.start, slot.end, slot.staff_id, label)
            part = self._encoded.get(key)
            if part is None:
                body = bytes(slot_message(slot, label))
                part = _SLOTS_TAG + _varint(len(body)) + body
                if len(self._encoded) >= self._max_slots:
                    self._encoded.clear()
                self._encoded[key] = part
            parts.append(part)
        return EncodedAvailability(b"".join(parts))
