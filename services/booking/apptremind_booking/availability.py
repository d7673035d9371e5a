"""Availability engine: the slots at which a service can be booked, for one staff member or "any staff".

A pure module: no I/O, no database, no clock (``now`` is a parameter), standard library and ``zoneinfo`` only.
The booking-service feeds it from its read model and calls it for the availability RPC and, to re-check a
requested start before inserting, with a one-microsecond range (``range_start=start``,
``range_end=start + timedelta(microseconds=1)``, ``staff_id=...``); the database exclusion constraint stays the
last word on double booking.

API
---
Inputs (frozen dataclasses; constructors raise ``ValueError`` on malformed values):

- ``WeeklyInterval(weekday, start_minute, end_minute)``: ISO weekday 1=Mon..7=Sun and minutes of the local day in
  the BUSINESS zone, ``0 <= start_minute < end_minute <= 1440`` (1440 = next midnight). Hours that run past
  midnight are two intervals (e.g. Mon 18:00-24:00 and Tue 00:00-02:00); they form one stretch (rule 4).
- ``StaffSchedule(staff_id, hours, breaks)``: weekly hours and weekly breaks of one staff member.
- ``Override(staff_id, kind, start, end)``: aware datetimes, ``end > start``. ``kind`` decides the effect
  (``extra_hours`` adds time, ``time_off`` and ``holiday`` remove it); ``staff_id`` decides who: one staff member,
  or ``None`` for the whole business.
- ``Busy(staff_id, start, end)``: an active appointment's range INCLUDING its own buffers, exactly the range the
  database exclusion constraint stores.
- ``ServiceRule(duration, buffer_before, buffer_after, staff_ids)``: ``duration > 0``, buffers ``>= 0``.
- ``BookingRules(slot_interval=15 min, min_notice=2 h, window=60 days)``: ``slot_interval >= 1 min`` (it bounds
  the work per query), ``min_notice >= 0``, ``window >= 0``.

Output: ``Slot(start, end, staff_id)`` in UTC; ``Slot.padded(service)`` is ``(start - buffer_before,
end + buffer_after)``, the range to store in the exclusion constraint when the slot is booked.

``available_slots(*, business_tz, service, staff, overrides, busy, rules, range_start, range_end, now,
staff_id=None) -> list[Slot]`` sorted by ``(start, staff_id)``. ``local_label(slot, customer_tz) -> str`` renders
a slot start as ISO 8601 with offset in the customer's zone, e.g. ``2026-03-29T03:00:00+02:00``.

For a cache: ``slots_from_day(..., first_day=earliest_day(...))`` is the answer before the notice and window cut,
the same for every ``now`` of that first day, and ``within_notice_and_window(slots, rules, now)`` turns it into
exactly what ``available_slots(..., now=now)`` returns (see ``slots_from_day``).

Errors (``ValueError``, which the gRPC layer maps to INVALID_ARGUMENT): a naive datetime anywhere, a time zone that
is not an IANA name, ``range_end <= range_start``, a range longer than 62 days, duplicate schedules for a staff
member.

Semantics
---------
1. Candidate staff: ``service.staff_ids``, narrowed to ``staff_id`` when given (a staff member who does not offer
   the service gets no slots, not an error). A candidate without a ``StaffSchedule`` has no weekly hours but can
   still have ``extra_hours``.
2. Available time of a staff member, per local date (business zone) touched by the query:
   ``((weekly hours - weekly breaks) + extra_hours) - (time_off + holiday)``. Breaks only cut weekly hours, so extra
   hours can cover a break; time off and holidays win over everything, so a date marked closed is never offered.
   A weekly minute on a date becomes a real instant with that date's DST rules: a repeated wall time (fall-back)
   means its first occurrence, a skipped one (spring-forward gap) means the transition instant. So 00:00-06:00 is
   5 real hours on a spring-forward day and 7 on a fall-back day, and 02:30-06:00 on a Berlin spring-forward day
   starts at 03:00.
3. Grid: starts are every ``slot_interval`` of WALL-CLOCK time from the local start of each stretch of available
   time (so after a break ending 12:45 the grid is 12:45, 13:00 ... with 15 min). A grid time inside a DST gap is
   never offered; a repeated grid time is offered once, as its first occurrence (fold=0), so one staff member never
   has two slots with the same local label (a stretch starting inside the repeated hour's second pass therefore
   offers its starts from the next wall time that is not repeated). ``Slot.end = start + duration`` in real time.
   Stretches are computed from the local day before the query, so the grid does not depend on ``range_start``
   (an evening stretch continuing past midnight keeps its grid). The one exception: a stretch running unbroken
   through that whole lead-in day is anchored at its midnight. With 24/7 weekly hours that changes nothing for a
   slot interval dividing 24 h; a multi-day ``extra_hours`` override starting at, say, 10:05 gets a grid from
   midnight instead of 10:05 on the days after its first.
4. A start is offered when: the core ``[start, end)`` lies inside one contiguous stretch (adjacent pieces merge,
   including across midnight); the padded range ``[start - buffer_before, end + buffer_after)`` overlaps no
   ``Busy`` of that staff member (half-open: touching is fine; buffers may extend outside working hours, never into
   another appointment's range); ``start >= now + min_notice``; ``start <= now + window``;
   ``range_start <= start < range_end``.
5. ``staff_id=None`` ("any staff"): one slot per distinct start, given to the candidate with the least booked time
   on that start's local date (sum of their ``Busy`` ranges intersected with that date), ties by ``staff_id``
   ascending. Least-booked spreads the day's load across the team instead of filling the first staff member's
   calendar; the tie-break makes the answer deterministic, so a customer who reloads sees the same staff member.
   With ``staff_id`` given: that staff member's slots only.

Cost: stretches are built per staff per day, the grid is walked once per stretch starting near ``range_start``, and
each candidate checks buffers against that staff member's ``Busy`` sorted once, with a bisect and a prefix maximum
of ends: O((days + slots) log busy) per staff, never slots x busy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_RANGE",
    "BookingRules",
    "Busy",
    "Override",
    "OverrideKind",
    "ServiceRule",
    "Slot",
    "StaffSchedule",
    "WeeklyInterval",
    "available_slots",
    "earliest_day",
    "local_label",
    "slots_from_day",
    "within_notice_and_window",
]

MAX_RANGE = timedelta(days=62)
MINUTES_PER_DAY = 1440

OverrideKind: TypeAlias = Literal["time_off", "holiday", "extra_hours"]
_KINDS: frozenset[str] = frozenset({"time_off", "holiday", "extra_hours"})
# Keys zoneinfo loads that are not IANA zones but aliases for the host's own zone: a schedule must not silently
# follow whatever machine the service runs on.
_HOST_ZONE_KEYS = frozenset({"localtime", "posixrules"})
# Real-time spans are half-open [start, end) pairs of UTC datetimes.
_Span: TypeAlias = tuple[datetime, datetime]


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


def _zone(name: str, what: str) -> ZoneInfo:
    if name in _HOST_ZONE_KEYS:
        raise ValueError(f"{what} {name!r} is not an IANA time zone name (e.g. 'Europe/Berlin')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{what} {name!r} is not an IANA time zone name (e.g. 'Europe/Berlin')") from exc


@dataclass(frozen=True, slots=True)
class WeeklyInterval:
    """Wall-clock interval of one weekday in the business zone."""

    weekday: int  # ISO: 1 = Monday .. 7 = Sunday
    start_minute: int
    end_minute: int  # exclusive; 1440 = the next midnight

    def __post_init__(self) -> None:
        if not 1 <= self.weekday <= 7:
            raise ValueError(f"weekday must be an ISO weekday 1..7, got {self.weekday}")
        if not 0 <= self.start_minute < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(
                f"need 0 <= start_minute < end_minute <= {MINUTES_PER_DAY}, "
                f"got {self.start_minute}..{self.end_minute} (split intervals that cross midnight)"
            )


@dataclass(frozen=True, slots=True)
class StaffSchedule:
    staff_id: str
    hours: tuple[WeeklyInterval, ...]
    breaks: tuple[WeeklyInterval, ...] = ()


@dataclass(frozen=True, slots=True)
class Override:
    """A dated change to availability; ``staff_id`` None applies to the whole business."""

    staff_id: str | None
    kind: OverrideKind
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"override kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        _require_aware(self.start, "override start")
        _require_aware(self.end, "override end")
        if self.end <= self.start:
            raise ValueError(
                f"override end {self.end.isoformat()} must be after start {self.start.isoformat()}"
            )


@dataclass(frozen=True, slots=True)
class Busy:
    """An active appointment's range including its buffers (the exclusion constraint's range)."""

    staff_id: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "busy start")
        _require_aware(self.end, "busy end")
        if self.end <= self.start:
            raise ValueError(f"busy end {self.end.isoformat()} must be after start {self.start.isoformat()}")


@dataclass(frozen=True, slots=True)
class ServiceRule:
    duration: timedelta
    buffer_before: timedelta
    buffer_after: timedelta
    staff_ids: frozenset[str]

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError(f"service duration must be positive, got {self.duration}")
        if self.buffer_before < timedelta(0) or self.buffer_after < timedelta(0):
            raise ValueError("service buffers must not be negative")


@dataclass(frozen=True, slots=True)
class BookingRules:
    slot_interval: timedelta = timedelta(minutes=15)
    min_notice: timedelta = timedelta(hours=2)
    window: timedelta = timedelta(days=60)

    def __post_init__(self) -> None:
        if self.slot_interval < timedelta(minutes=1):
            raise ValueError(f"slot_interval must be at least 1 minute, got {self.slot_interval}")
        if self.min_notice < timedelta(0) or self.window < timedelta(0):
            raise ValueError("min_notice and window must not be negative")


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable start for one staff member; ``start`` and ``end`` are UTC."""

    start: datetime
    end: datetime
    staff_id: str

    def __post_init__(self) -> None:
        _require_aware(self.start, "slot start")
        _require_aware(self.end, "slot end")

    def padded(self, service: ServiceRule) -> tuple[datetime, datetime]:
        """The range this slot occupies once booked, buffers included."""
        return self.start - service.buffer_before, self.end + service.buffer_after


def local_label(slot: Slot, customer_tz: str) -> str:
    """ISO 8601 local start with offset in the customer's zone, e.g. ``2026-03-29T03:00:00+02:00``."""
    return slot.start.astimezone(_zone(customer_tz, "customer time zone")).isoformat()


# --- wall clock <-> real time -------------------------------------------------------------------------------------


def _local(instant: datetime, tz: ZoneInfo) -> datetime:
    """Naive wall-clock time of an instant (the fold is dropped: it is the label a person reads)."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """Real instant of a naive wall time: first occurrence when repeated, the transition instant when skipped."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _local(first, tz) == wall:
        return first
    # In a gap, fold=1 reads the wall time with the post-transition offset, which lands before the transition,
    # and fold=0 with the pre-transition offset, which lands after it. Binary-search the transition between them;
    # tzdata transitions fall on whole seconds and this only runs for the rare boundary inside a gap.
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    high = int(first.timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if _local(datetime.fromtimestamp(middle, UTC), tz) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _first_instant(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The first real instant showing this wall time, or None when the wall time is in a DST gap."""
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return instant if _local(instant, tz) == wall else None


# --- interval algebra on sorted half-open spans -------------------------------------------------------------------


def _merge(spans: list[_Span]) -> list[_Span]:
    """Sort and merge overlapping or touching spans: touching pieces (e.g. across midnight) form one stretch."""
    merged: list[_Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _subtract(base: list[_Span], cuts: list[_Span]) -> list[_Span]:
    """``base - cuts``; both merged and sorted."""
    result: list[_Span] = []
    first_cut = 0
    for start, end in base:
        # Cuts ending before this span end before every later span too (base is sorted), so skip them for good.
        while first_cut < len(cuts) and cuts[first_cut][1] <= start:
            first_cut += 1
        cursor = start
        index = first_cut
        while index < len(cuts) and cuts[index][0] < end and cursor < end:
            cut_start, cut_end = cuts[index]
            if cut_start > cursor:
                result.append((cursor, cut_start))
            cursor = max(cursor, cut_end)
            index += 1
        if cursor < end:
            result.append((cursor, end))
    return result


# --- the engine ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Days:
    """Local dates of the query in the business zone, with their real-time bounds cached."""

    tz: ZoneInfo
    first: date
    last: date
    _bounds: dict[date, _Span] = field(default_factory=dict)

    def __iter__(self) -> Iterator[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)

    def wall(self, day: date, minute: int) -> datetime:
        return _wall_to_utc(datetime.combine(day, time()) + timedelta(minutes=minute), self.tz)

    def bounds(self, day: date) -> _Span:
        span = self._bounds.get(day)
        if span is None:
            span = (self.wall(day, 0), self.wall(day, MINUTES_PER_DAY))
            self._bounds[day] = span
        return span


def _weekly_spans(intervals: Sequence[WeeklyInterval], days: _Days) -> list[_Span]:
    by_weekday: dict[int, list[WeeklyInterval]] = {}
    for interval in intervals:
        by_weekday.setdefault(interval.weekday, []).append(interval)
    spans: list[_Span] = []
    for day in days:
        for interval in by_weekday.get(day.isoweekday(), ()):
            spans.append((days.wall(day, interval.start_minute), days.wall(day, interval.end_minute)))
    return spans


def _stretches(schedule: StaffSchedule | None, overrides: Sequence[Override], days: _Days) -> list[_Span]:
    """Maximal contiguous stretches of available real time over the query's days (semantics rule 2)."""
    window_start, window_end = days.bounds(days.first)[0], days.bounds(days.last)[1]
    extra: list[_Span] = []
    closed: list[_Span] = []
    for override in overrides:
        # Clip to the computed days so stretches have the same bounds whether an override is long or short.
        span = (max(override.start, window_start), min(override.end, window_end))
        if span[0] < span[1]:
            (extra if override.kind == "extra_hours" else closed).append(span)
    weekly: list[_Span] = []
    if schedule is not None:
        weekly = _subtract(
            _merge(_weekly_spans(schedule.hours, days)), _merge(_weekly_spans(schedule.breaks, days))
        )
    return _subtract(_merge(weekly + extra), _merge(closed))


@dataclass(slots=True)
class _BusyIndex:
    """One staff member's busy ranges sorted by start, with a running maximum of ends for O(log n) overlap."""

    starts: list[datetime]
    max_end: list[datetime]
    spans: list[_Span]

    @classmethod
    def build(cls, spans: list[_Span]) -> _BusyIndex:
        spans = sorted(spans)
        max_end: list[datetime] = []
        for _, end in spans:
            max_end.append(end if not max_end or end > max_end[-1] else max_end[-1])
        return cls([start for start, _ in spans], max_end, spans)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        # Ranges starting before `end` are a prefix; one of them overlaps iff the latest end among them is after
        # `start` (half-open, so touching is not an overlap). Correct even if busy ranges overlap each other.
        before_end = bisect_left(self.starts, end)
        return before_end > 0 and self.max_end[before_end - 1] > start

    def load_per_day(self, days: _Days) -> dict[date, timedelta]:
        load: dict[date, timedelta] = {}
        for start, end in self.spans:
            day = max(_local(start, days.tz).date(), days.first)
            while day <= days.last:
                day_start, day_end = days.bounds(day)
                if day_start >= end:
                    break
                booked = min(end, day_end) - max(start, day_start)
                if booked > timedelta(0):
                    load[day] = load.get(day, timedelta(0)) + booked
                day += timedelta(days=1)
        return load


def _staff_slots(
    *,
    staff_id: str,
    stretches: list[_Span],
    busy: _BusyIndex,
    service: ServiceRule,
    step: timedelta,
    earliest: datetime,
    before: datetime,
    latest: datetime,
    tz: ZoneInfo,
) -> list[Slot]:
    """Grid starts of one staff member satisfying rule 4; ``earliest <= start < before`` and ``start <= latest``."""
    slots: list[Slot] = []
    duration, pad_before, pad_after = service.duration, service.buffer_before, service.buffer_after
    earliest_local = _local(earliest, tz)
    for stretch_start, stretch_end in stretches:
        if stretch_start >= before or stretch_start > latest:
            break
        if stretch_end - duration < earliest:
            continue
        anchor = _local(stretch_start, tz)
        # Jump to the last grid time at or before `earliest`'s own wall time instead of walking a long stretch
        # from its start: first occurrences grow with the wall time, so earlier grid times are all too early.
        skip = earliest_local - anchor
        wall = anchor + (skip // step) * step if skip > timedelta(0) else anchor
        while True:
            start = _first_instant(wall, tz)
            wall += step
            if start is None:
                continue  # a DST gap: this wall time never happens
            end = start + duration
            # Real instants of existing wall times increase along the grid, so the first start past a bound ends
            # the stretch.
            if end > stretch_end or start >= before or start > latest:
                break
            # start < stretch_start: a repeated wall time whose first occurrence precedes this stretch.
            if start < stretch_start or start < earliest:
                continue
            if not busy.overlaps(start - pad_before, end + pad_after):
                slots.append(Slot(start, end, staff_id))
    return slots


def _checked(
    business_tz: str,
    staff: Sequence[StaffSchedule],
    range_start: datetime,
    range_end: datetime,
    now: datetime | None,
) -> tuple[ZoneInfo, dict[str, StaffSchedule]]:
    tz = _zone(business_tz, "business time zone")
    for value, name in ((range_start, "range_start"), (range_end, "range_end"), (now, "now")):
        if value is not None:
            _require_aware(value, name)
    if range_end <= range_start:
        raise ValueError(
            f"range_end {range_end.isoformat()} must be after range_start {range_start.isoformat()}"
        )
    if range_end - range_start > MAX_RANGE:
        raise ValueError(f"the range may span at most {MAX_RANGE.days} days, got {range_end - range_start}")
    schedules: dict[str, StaffSchedule] = {}
    for schedule in staff:
        if schedule.staff_id in schedules:
            raise ValueError(f"duplicate schedule for staff {schedule.staff_id!r}")
        schedules[schedule.staff_id] = schedule
    return tz, schedules


def available_slots(
    *,
    business_tz: str,
    service: ServiceRule,
    staff: Sequence[StaffSchedule],
    overrides: Sequence[Override],
    busy: Sequence[Busy],
    rules: BookingRules,
    range_start: datetime,
    range_end: datetime,
    now: datetime,
    staff_id: str | None = None,
) -> list[Slot]:
    """Bookable slots of ``service`` with starts in ``[range_start, range_end)``; see the module docstring."""
    tz, schedules = _checked(business_tz, staff, range_start, range_end, now)
    # Arithmetic on a ZoneInfo-aware datetime is wall-clock arithmetic; in UTC it is real time.
    now = now.astimezone(UTC)
    earliest = max(range_start.astimezone(UTC), now + rules.min_notice)
    return _slots_between(
        tz=tz,
        service=service,
        schedules=schedules,
        overrides=overrides,
        busy=busy,
        step=rules.slot_interval,
        earliest=earliest,
        before=range_end.astimezone(UTC),
        latest=now + rules.window,
        staff_id=staff_id,
    )


def earliest_day(*, business_tz: str, rules: BookingRules, range_start: datetime, now: datetime) -> date:
    """The business-zone date of the earliest start a query at ``now`` can offer (range start or notice)."""
    tz = _zone(business_tz, "business time zone")
    _require_aware(range_start, "range_start")
    _require_aware(now, "now")
    return _local(max(range_start.astimezone(UTC), now.astimezone(UTC) + rules.min_notice), tz).date()


def slots_from_day(
    *,
    business_tz: str,
    service: ServiceRule,
    staff: Sequence[StaffSchedule],
    overrides: Sequence[Override],
    busy: Sequence[Busy],
    rules: BookingRules,
    range_start: datetime,
    range_end: datetime,
    first_day: date,
    staff_id: str | None = None,
) -> list[Slot]:
    """``available_slots`` for every ``now`` at once, as long as ``earliest_day(now)`` is ``first_day``.

    The answer of ``available_slots`` depends on ``now`` only through the notice and window bounds on a start
    and through the first computed day (``earliest_day``; a stretch running through the whole lead-in day is
    anchored at its midnight, semantics rule 3). So for such a ``now``::

        available_slots(..., now=now) == within_notice_and_window(slots_from_day(...), rules, now)

    which lets a cache keep this list for the rest of the day instead of recomputing it as ``now`` moves.
    """
    tz, schedules = _checked(business_tz, staff, range_start, range_end, None)
    day_start = _wall_to_utc(datetime.combine(first_day, time()), tz)
    before = range_end.astimezone(UTC)
    return _slots_between(
        tz=tz,
        service=service,
        schedules=schedules,
        overrides=overrides,
        busy=busy,
        step=rules.slot_interval,
        earliest=max(range_start.astimezone(UTC), day_start),
        before=before,
        # Every start is before `before`, so this bound cuts nothing; the window is applied by the reader.
        latest=before,
        staff_id=staff_id,
    )


def within_notice_and_window(slots: Sequence[Slot], rules: BookingRules, now: datetime) -> list[Slot]:
    """The slots a customer may book at ``now``: ``now + min_notice <= start <= now + window``."""
    _require_aware(now, "now")
    now = now.astimezone(UTC)
    earliest, latest = now + rules.min_notice, now + rules.window
    return [slot for slot in slots if earliest <= slot.start <= latest]


def _slots_between(
    *,
    tz: ZoneInfo,
    service: ServiceRule,
    schedules: dict[str, StaffSchedule],
    overrides: Sequence[Override],
    busy: Sequence[Busy],
    step: timedelta,
    earliest: datetime,
    before: datetime,
    latest: datetime,
    staff_id: str | None,
) -> list[Slot]:
    """Semantics rules 1-5 for starts with ``earliest <= start < before`` and ``start <= latest`` (UTC)."""
    if earliest >= before or earliest > latest:
        return []
    last_start = min(before, latest)
    # One day of lead-in so stretches that began the evening before (and their grid anchors) are seen whole, and
    # enough days after the last start for its whole duration.
    days = _Days(
        tz,
        first=_local(earliest, tz).date() - timedelta(days=1),
        last=_local(last_start + service.duration, tz).date() + timedelta(days=1),
    )

    candidates = sorted(service.staff_ids if staff_id is None else service.staff_ids & {staff_id})
    busy_by_staff: dict[str, list[_Span]] = {member: [] for member in candidates}
    for entry in busy:
        spans = busy_by_staff.get(entry.staff_id)
        if spans is not None:
            spans.append((entry.start.astimezone(UTC), entry.end.astimezone(UTC)))
    overrides_by_staff: dict[str | None, list[Override]] = {}
    for override in overrides:
        overrides_by_staff.setdefault(override.staff_id, []).append(override)
    # Convert once: every comparison below is between UTC datetimes.
    business_wide = [_utc_override(o) for o in overrides_by_staff.get(None, [])]

    per_staff: dict[str, list[Slot]] = {}
    indexes: dict[str, _BusyIndex] = {}
    for member in candidates:
        own = [_utc_override(o) for o in overrides_by_staff.get(member, [])]
        indexes[member] = _BusyIndex.build(busy_by_staff[member])
        per_staff[member] = _staff_slots(
            staff_id=member,
            stretches=_stretches(schedules.get(member), own + business_wide, days),
            busy=indexes[member],
            service=service,
            step=step,
            earliest=earliest,
            before=before,
            latest=latest,
            tz=tz,
        )

    if staff_id is not None or len(candidates) <= 1:
        return sorted((s for slots in per_staff.values() for s in slots), key=lambda s: (s.start, s.staff_id))
    return _pick_least_booked(per_staff, indexes, days)


def _utc_override(override: Override) -> Override:
    return Override(
        override.staff_id, override.kind, override.start.astimezone(UTC), override.end.astimezone(UTC)
    )


def _pick_least_booked(
    per_staff: dict[str, list[Slot]], indexes: dict[str, _BusyIndex], days: _Days
) -> list[Slot]:
    """Rule 5: one slot per start, for the least-booked staff member on that local date, ties by staff_id."""
    loads = {member: index.load_per_day(days) for member, index in indexes.items()}
    chosen: dict[datetime, Slot] = {}
    rank: dict[datetime, tuple[timedelta, str]] = {}
    for member, slots in per_staff.items():
        member_load = loads[member]
        for slot in slots:
            key = (member_load.get(_local(slot.start, days.tz).date(), timedelta(0)), member)
            if slot.start not in rank or key < rank[slot.start]:
                rank[slot.start] = key
                chosen[slot.start] = slot
    return [chosen[start] for start in sorted(chosen)]


if __name__ == "__main__":  # pragma: no cover - a timing sanity check, not a benchmark
    import random
    import timeit

    berlin = ZoneInfo("Europe/Berlin")
    origin = datetime(2026, 6, 1, tzinfo=berlin)
    rng = random.Random(7)
    booked = []
    for _ in range(500):
        start = origin + timedelta(minutes=15 * rng.randrange(14 * 96))
        booked.append(Busy("s1", start, start + timedelta(minutes=30)))
    week = tuple(WeeklyInterval(d, 8 * 60, 20 * 60) for d in range(1, 8))

    def query() -> list[Slot]:
        return available_slots(
            business_tz="Europe/Berlin",
            service=ServiceRule(
                timedelta(minutes=30), timedelta(0), timedelta(minutes=10), frozenset({"s1"})
            ),
            staff=[StaffSchedule("s1", week, (WeeklyInterval(3, 12 * 60, 13 * 60),))],
            overrides=[],
            busy=booked,
            rules=BookingRules(min_notice=timedelta(0)),
            range_start=origin,
            range_end=origin + timedelta(days=14),
            now=origin - timedelta(days=1),
        )

    runs = 200
    seconds = timeit.timeit(query, number=runs)
    print(f"{len(query())} slots, {seconds / runs * 1000:.2f} ms per query (1 staff x 14 days, 500 busy)")
