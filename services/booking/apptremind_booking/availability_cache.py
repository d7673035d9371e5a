"""An in-process cache of computed availability, validated against the business's generation on every read.

Computing slots costs milliseconds of CPU per query (the engine walks every stretch of the range) while a
business's calendar changes rarely compared with how often customers look at it. An entry holds the slots
of one query (business, service, staff, range, customer zone) as `availability.slots_from_day` computed
them, i.e. before the notice and window cut, together with:

- the business's availability generation it was computed at: every write that can change the slots bumps
  the committed generation in its own transaction (`repository.bump_generation`), so an entry is used only
  while the generation the request reads is still the one it was computed at; a booking is never hidden;
- the business-zone date of the query's earliest start, the only other thing `now` changes in an answer:
  when the day moves on the entry is recomputed;
- the business's time zone (covered by the generation), to work out that date without a query.

A read then costs one indexed SELECT of the generation plus two bisects for the notice and window. Size is
bounded by the number of cached slots (entries are evicted least recently used first), since one entry of
a busy 14-day calendar can hold a thousand slots and a tiny one none. See docs/adr/0010-availability-cache.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter

from .availability import BookingRules, Slot

LOOKUPS = Counter(
    "booking_availability_cache_lookups_total",
    "Availability queries by cache outcome: hit, stale (generation or day moved on) or miss",
    ["outcome"],
)

DEFAULT_MAX_SLOTS = 200_000


@dataclass(frozen=True, slots=True)
class Key:
    business_id: uuid.UUID
    service_id: uuid.UUID
    staff_id: uuid.UUID | None
    range_start: dt.datetime
    range_end: dt.datetime
    time_zone: str


@dataclass(frozen=True, slots=True)
class Entry:
    generation: int
    business_tz: str
    first_day: dt.date
    # Sorted by start; `starts` mirrors it for the bisects.
    slots: tuple[tuple[Slot, str], ...]
    starts: tuple[dt.datetime, ...]

    @classmethod
    def of(
        cls, generation: int, business_tz: str, first_day: dt.date, slots: list[tuple[Slot, str]]
    ) -> Entry:
        return cls(generation, business_tz, first_day, tuple(slots), tuple(s.start for s, _ in slots))

    def bookable(self, rules: BookingRules, now: dt.datetime) -> list[tuple[Slot, str]]:
        """`availability.within_notice_and_window` on the cached slots, in O(log n) plus the copy."""
        low = bisect_left(self.starts, now + rules.min_notice)
        high = bisect_right(self.starts, now + rules.window)
        return list(self.slots[low:high])


class AvailabilityCache:
    """A bounded LRU of `Entry` by `Key`. Single event loop: no locking needed between awaits."""

    def __init__(self, max_slots: int = DEFAULT_MAX_SLOTS) -> None:
        if max_slots < 0:
            raise ValueError("max_slots must not be negative")
        self._max_slots = max_slots
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._slots = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cached_slots(self) -> int:
        return self._slots

    def get(self, key: Key) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, entry: Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._slots -= self._weight(old)
        weight = self._weight(entry)
        if weight > self._max_slots:
            return  # larger than the whole budget: would only evict everything else
        self._entries[key] = entry
        self._slots += weight
        while self._slots > self._max_slots:
            _, evicted = self._entries.popitem(last=False)
            self._slots -= self._weight(evicted)

    @staticmethod
    def _weight(entry: Entry) -> int:
        # An empty answer still costs its key and entry; count it as one slot so the entry count is bounded.
        return max(1, len(entry.slots))
