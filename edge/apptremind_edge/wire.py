"""GetAvailabilityResponse decoded straight from its wire form into the GraphQL `Slot`s.

betterproto2 decodes in pure Python through generic per-field machinery: for an availability answer that
was the edge's largest single cost per request, more than executing the GraphQL operation around it. The
message is small and fixed (`repeated Slot slots = 1`; Slot: two Timestamps and two strings), so this reads
exactly those fields, skips any other by its wire type (a field added later is ignored, as betterproto2
would ignore it), and is tested against betterproto2's own encoding.
"""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class WireError(ValueError):
    """The bytes are not a well-formed message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _varint(data, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise WireError(f"unsupported wire type {wire_type}")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _timestamp(data: bytes, pos: int, end: int) -> dt.datetime:
    seconds = nanos = 0
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 0:
            raw, pos = _varint(data, pos)
            seconds = _signed64(raw)
        elif field == 2 and wire_type == 0:
            raw, pos = _varint(data, pos)
            nanos = _signed64(raw)
        else:
            pos = _skip(data, pos, wire_type)
    # As betterproto2's Timestamp.to_datetime: whole microseconds, UTC.
    return _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)


SlotFields = tuple[dt.datetime | None, dt.datetime | None, str, str]


def _slot(data: bytes, pos: int, end: int) -> SlotFields:
    start: dt.datetime | None = None
    stop: dt.datetime | None = None
    staff_id = local_start = ""
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type != 2 or field > 4:
            pos = _skip(data, pos, wire_type)
            continue
        length, pos = _varint(data, pos)
        value_end = pos + length
        if value_end > end:
            raise WireError("field runs past its message")
        if field == 1:
            start = _timestamp(data, pos, value_end)
        elif field == 2:
            stop = _timestamp(data, pos, value_end)
        elif field == 3:
            staff_id = data[pos:value_end].decode()
        elif field == 4:
            local_start = data[pos:value_end].decode()
        pos = value_end
    return start, stop, staff_id, local_start


def decode_availability(data: bytes) -> list[SlotFields]:
    """The slots of a GetAvailabilityResponse, in order: (start_time, end_time, staff_id, local_start)."""
    slots: list[SlotFields] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise WireError("slot runs past the message")
            slots.append(_slot(data, pos, pos + length))
            pos += length
        else:
            pos = _skip(data, pos, wire_type)
    if pos != end:
        raise WireError("truncated message")
    return slots
