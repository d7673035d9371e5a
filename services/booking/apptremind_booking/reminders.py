"""Reminder plans: which reminders an appointment gets, and when. Pure: no I/O, no clock reads.

The booking-service calls `plan_reminders` when an appointment is booked and emits one
`booking.reminder.requested.v1` per planned reminder; on cancel it emits `booking.reminder.cancelled.v1` for the
old plan, and on reschedule it uses `diff_plans` to cancel only what moved and request only what is new. The
scheduler dedupes jobs by `PlannedReminder.idempotency_key` (`appointment_id|remind_at|channel`, GUIDE §4).

Semantics, in the order they are applied, per (offset, channel):

1. **Channels.** A channel of the policy is planned only if `recipients` has a non-blank address for it (an email
   address, or an E.164 phone number for sms); addresses are not checked here. Recipients for channels the policy
   does not use are ignored.

2. **Offsets are absolute time.** `remind_at = start - offset` computed in UTC. A 24 h reminder across a DST
   change is 24 real hours before the appointment, so its local wall-clock time differs from the appointment's by
   the DST shift (an appointment at 12:00 CEST on 2026-03-29 gets its 24 h reminder at 11:00 CET on 2026-03-28).
   Reason: an offset is a lead time ("a day's notice"), and real hours are what every other component (scheduler,
   Kafka, Postgres `timestamptz`) counts in. `remind_at` is floored to whole seconds so it is exactly the instant its
   idempotency key names.

3. **Quiet hours** are a daily window `[quiet_start, quiet_end)` on the business's local wall clock
   (`ReminderPolicy.time_zone`). The window wraps midnight when `quiet_start > quiet_end` (21:00-08:00 is the night
   from 21:00 to 08:00 the next morning). `quiet_start == quiet_end`, or both `None`, means no quiet hours.

   A reminder is never due later than `QUIET_HOURS_MARGIN` (1 minute) before a quiet period begins: one that would
   be due in `(begin - margin, end)` of a quiet period is moved EARLIER to exactly `begin - margin`, e.g. 20:59:00
   the evening before for 21:00-08:00. Moving earlier (never later) keeps the reminder before the appointment; the
   margin absorbs delivery lateness (the pipeline's goal is p99 <= 2 s) so a reminder sent "just before" quiet
   hours does not arrive inside them, where the send-time quiet-hours check would hold it back. A reminder due
   exactly at `quiet_end` is allowed. If the moved time falls in an earlier quiet period (only possible with a
   window of almost 24 h) it keeps moving earlier: the result is the latest allowed instant not after the
   original one.

   Each night's quiet period is turned into absolute instants with `zoneinfo`:
   - **DST gap** (a wall time that does not exist that day, e.g. 02:30 on 2026-03-29 in Europe/Berlin): both
     `quiet_start` and `quiet_end` resolve to the first real instant after the gap (03:00 CEST). That is the moment
     the wall clock first reads a time >= the configured one, which is what "quiet from 02:30" means to someone
     looking at a clock that jumps from 01:59:59 to 03:00:00.
   - **DST overlap** (a wall time that happens twice, e.g. 02:30 on 2026-10-25 in Europe/Berlin): `quiet_start`
     resolves to the FIRST occurrence and `quiet_end` to the LAST one. The quiet period therefore covers every
     instant whose wall-clock reading is inside the window, plus (in the repeated hour only) instants the clock
     shows twice; erring towards quiet is the safe side for "never wake a customer".

4. **Too late to be useful.** A reminder whose (shifted) `remind_at` is not strictly after `now` is dropped, not
   sent immediately: the customer is booking (or rescheduling) right now, so a reminder that is already due adds
   nothing. This includes a reminder that quiet hours pulled back into the past (booked at 21:30 for 07:00 the next
   morning with a 2 h offset). Reminders at or after `start` are dropped too; with positive offsets and moves that
   only go earlier this cannot happen, the check guards the invariant.

5. **Collisions.** Two offsets that land on the same instant after the quiet-hours move produce the same
   idempotency key, so one reminder per (instant, channel) is kept: the one with the LARGEST offset, i.e. the one
   that was moved least and whose `offset` is closest to the real lead time.

The plan is sorted by `(remind_at, channel)` and is deterministic: the same inputs give the same reminders and keys.

Invalid input raises `ValueError`: naive datetimes, an unknown IANA zone, a zero or negative offset, an unknown
channel, only one of `quiet_start`/`quiet_end` set, quiet times carrying a tzinfo, and appointment ids or channels
that are empty or contain the key separator `|`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "QUIET_HOURS_MARGIN",
    "Channel",
    "PlannedReminder",
    "ReminderPolicy",
    "diff_plans",
    "idempotency_key",
    "plan_reminders",
]

Channel = Literal["email", "sms"]
_CHANNELS: Final[frozenset[str]] = frozenset(get_args(Channel))

QUIET_HOURS_MARGIN: Final = timedelta(minutes=1)
"""How long before a quiet period begins the last reminder may be due (see the module docstring, point 3)."""

_KEY_SEPARATOR: Final = "|"
_ONE_DAY: Final = timedelta(days=1)


def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # ZoneInfoNotFoundError is a KeyError; malformed keys ("", "../x") are ValueError; a key naming a directory
    # of the tz database ("Europe") surfaces as an OSError on some platforms.
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _check_key_part(name: str, value: str) -> None:
    if not value or _KEY_SEPARATOR in value:
        raise ValueError(f"{name} must be non-empty and must not contain {_KEY_SEPARATOR!r}: {value!r}")


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """A business's reminder policy. Validated on construction, so an invalid policy cannot exist."""

    offsets: tuple[timedelta, ...]
    channels: tuple[Channel, ...]
    quiet_start: time | None
    quiet_end: time | None
    time_zone: str  # the business's IANA zone; quiet hours are read on its wall clock

    def __post_init__(self) -> None:
        for offset in self.offsets:
            if offset <= timedelta(0):
                raise ValueError(f"reminder offsets must be positive, got {offset}")
        for channel in self.channels:
            # Literal is not enforced at runtime; a policy loaded from a database row could carry anything.
            if channel not in _CHANNELS:
                raise ValueError(f"unknown reminder channel {channel!r}, expected one of {sorted(_CHANNELS)}")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet_start and quiet_end must both be set or both be None")
        for bound in (self.quiet_start, self.quiet_end):
            if bound is not None and bound.tzinfo is not None:
                raise ValueError("quiet hours are local wall-clock times and must not carry a tzinfo")
        _load_zone(self.time_zone)


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One reminder to request from the scheduler."""

    remind_at: datetime  # UTC, aware, whole seconds
    channel: str
    offset: timedelta  # the policy offset it came from; quiet hours can make the real lead time longer
    idempotency_key: str


def idempotency_key(appointment_id: str, remind_at: datetime, channel: str) -> str:
    """The scheduler job key `appointment_id|remind_at|channel` (GUIDE §4).

    `remind_at` is rendered in UTC as ISO-8601 with a `Z` suffix at second precision (sub-second parts are
    dropped), e.g. `0190c3b2-...|2026-03-28T10:00:00Z|email`, so the same instant given in any zone gives the
    same key.
    """
    _check_key_part("appointment_id", appointment_id)
    _check_key_part("channel", channel)
    _require_aware("remind_at", remind_at)
    stamp = remind_at.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds") + "Z"
    return _KEY_SEPARATOR.join((appointment_id, stamp, channel))


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _offset_at(instant: datetime, zone: tzinfo) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _gap_end(before: datetime, after: datetime, zone: tzinfo) -> datetime:
    """The first instant after a DST gap, given UTC instants just before and after the transition.

    zoneinfo does not expose its transition table, so bisect on whole seconds (tz transitions fall on whole
    seconds): at most ~13 steps for a 2 h window.
    """
    low = math.floor(before.timestamp())  # stays before the transition
    high = math.ceil(after.timestamp())  # stays at or after the transition
    target = _offset_at(after, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(datetime.fromtimestamp(middle, UTC), zone) == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _resolve(day: date, wall: time, zone: ZoneInfo, *, last: bool) -> datetime:
    """The UTC instant at which the local wall clock reads `wall` on `day`.

    Overlap: the first occurrence, or the last one if `last`. Gap: the first real instant after the gap.
    """
    first = datetime.combine(day, wall, tzinfo=zone).replace(fold=0)
    second = first.replace(fold=1)
    first_utc, second_utc = first.astimezone(UTC), second.astimezone(UTC)
    naive = datetime.combine(day, wall)
    if first_utc.astimezone(zone).replace(tzinfo=None) == naive:
        # The wall time exists. In an overlap fold=0 is the earlier instant and fold=1 the later one; otherwise the
        # two folds are the same instant.
        return second_utc if last else first_utc
    # In a gap PEP 495 maps fold=0 with the pre-transition offset (an instant after the gap) and fold=1 with the
    # post-transition one (an instant before it); the transition lies between them.
    return _gap_end(second_utc, first_utc, zone)


def _quiet_periods(
    instant: datetime, policy: ReminderPolicy, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """The quiet periods (UTC, half-open) of the nights that can affect `instant`."""
    start, end = policy.quiet_start, policy.quiet_end
    if start is None or end is None or start == end:
        return []
    wraps = start > end
    local_day = instant.astimezone(zone).date()
    periods = []
    # The previous night (a wrapping window that began yesterday), today, and tomorrow (its margin can reach back
    # into today, e.g. a window starting at 00:00).
    for day in (local_day - _ONE_DAY, local_day, local_day + _ONE_DAY):
        begin = _resolve(day, start, zone, last=False)
        finish = _resolve(day + _ONE_DAY if wraps else day, end, zone, last=True)
        if begin < finish:  # a non-wrapping window that lies entirely inside a DST gap is empty that day
            periods.append((begin, finish))
    return periods


def _move_out_of_quiet_hours(
    remind_at: datetime, policy: ReminderPolicy, zone: ZoneInfo, now: datetime
) -> datetime:
    # Each step moves to a strictly earlier night, so this ends; stopping once at or before `now` bounds it for
    # pathological near-24 h windows (such a reminder is dropped anyway).
    while remind_at > now:
        blocking = [
            begin
            for begin, end in _quiet_periods(remind_at, policy, zone)
            if begin - QUIET_HOURS_MARGIN < remind_at < end
        ]
        if not blocking:
            break
        remind_at = _floor_second(min(blocking) - QUIET_HOURS_MARGIN)
    return remind_at


def plan_reminders(
    *,
    appointment_id: str,
    start: datetime,
    policy: ReminderPolicy,
    now: datetime,
    recipients: Mapping[str, str],
) -> list[PlannedReminder]:
    """The reminders to request for an appointment starting at `start`; see the module docstring."""
    _check_key_part("appointment_id", appointment_id)
    _require_aware("start", start)
    _require_aware("now", now)
    zone = _load_zone(policy.time_zone)
    # Subtract in UTC: `aware - timedelta` on a ZoneInfo datetime is wall-clock arithmetic and would give the same
    # local time the day before (23 or 25 real hours across a DST change) instead of 24 real hours.
    start_utc = start.astimezone(UTC)
    now_utc = now.astimezone(UTC)

    channels = [c for c in dict.fromkeys(policy.channels) if recipients.get(c, "").strip()]
    chosen: dict[tuple[datetime, str], timedelta] = {}
    # Largest offset first, so on a collision the first one seen (the one moved least) is kept.
    for offset in sorted(set(policy.offsets), reverse=True):
        remind_at = _floor_second(start_utc - offset)
        remind_at = _move_out_of_quiet_hours(remind_at, policy, zone, now_utc)
        if not now_utc < remind_at < start_utc:
            continue
        for channel in channels:
            chosen.setdefault((remind_at, channel), offset)

    return [
        PlannedReminder(
            remind_at=remind_at,
            channel=channel,
            offset=offset,
            idempotency_key=idempotency_key(appointment_id, remind_at, channel),
        )
        for (remind_at, channel), offset in sorted(chosen.items())
    ]


def diff_plans(
    old: Sequence[PlannedReminder], new: Sequence[PlannedReminder]
) -> tuple[list[PlannedReminder], list[PlannedReminder]]:
    """`(to_cancel, to_request)` for a reschedule, compared by idempotency key.

    A reminder whose key is in both plans is left alone (the scheduler already holds that job); old-only keys are
    cancelled, new-only keys requested. Each list is deduplicated by key and sorted by `(remind_at, channel)`.
    For a cancellation pass an empty `new`.
    """
    old_by_key = {r.idempotency_key: r for r in old}
    new_by_key = {r.idempotency_key: r for r in new}

    def ordered(reminders: list[PlannedReminder]) -> list[PlannedReminder]:
        return sorted(reminders, key=lambda r: (r.remind_at, r.channel))

    to_cancel = ordered([r for key, r in old_by_key.items() if key not in new_by_key])
    to_request = ordered([r for key, r in new_by_key.items() if key not in old_by_key])
    return to_cancel, to_request
