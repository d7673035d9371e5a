"""Input rules of the business-service, as pure functions that return clean values or raise InvalidArgument
with a machine-readable reason. No I/O here: rules that need the database (unknown ids) live in service.py.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Mapping, Sequence

from apptremind_platform.errors import InvalidArgument

# The shared rules, re-exported: this service calls every rule as validation.<rule>.
from apptremind_platform.pagination import decode_page_token as decode_page_token
from apptremind_platform.pagination import encode_page_token as encode_page_token
from apptremind_platform.pagination import page_size as page_size
from apptremind_platform.validation import SLUG_MAX as SLUG_MAX
from apptremind_platform.validation import currency as currency
from apptremind_platform.validation import locale as locale
from apptremind_platform.validation import name as name
from apptremind_platform.validation import slug as slug
from apptremind_platform.validation import time_zone as time_zone

from .domain import Channel, Interval, IntervalText

# Deliberately loose: the address is only checked for shape; delivery proves the rest.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
EMAIL_MAX = 254
TIME_RE = re.compile(r"^([0-9]{2}):([0-9]{2})$")
TEMPLATE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
REASON_MAX = 500
MINUTES_PER_DAY = 24 * 60

MAX_INTERVALS = 70  # per kind and staff member: ten a day is already an odd week
DURATION_MAX = 1440
BUFFER_MAX = 240
FREE_CANCELLATION_HOURS_MAX = 720
OFFSET_MAX = 30 * 24 * 60
OFFSETS_MAX_COUNT = 5
TEMPLATES_MAX_COUNT = 20
TEMPLATE_VALUE_MAX = 100


def email(value: str) -> str:
    text = value.strip()
    if text and (len(text) > EMAIL_MAX or not EMAIL_RE.match(text)):
        raise InvalidArgument("invalid_email", f"{value!r} is not an email address")
    return text


def parse_id(value: str) -> uuid.UUID | None:
    """The UUID `value` names, or None when it is not one (callers answer NOT_FOUND: it cannot exist)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def user_id(value: str) -> uuid.UUID | None:
    if not value:
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise InvalidArgument("invalid_user_id", f"{value!r} is not a user id")
    return parsed


def time_of_day(value: str, *, end: bool = False) -> int:
    """Minutes after midnight for "HH:MM"; "24:00" only as the end of an interval."""
    match = TIME_RE.match(value)
    if match is not None:
        hours, minutes = int(match[1]), int(match[2])
        total = hours * 60 + minutes
        if minutes < 60 and (total < MINUTES_PER_DAY or (end and total == MINUTES_PER_DAY)):
            return total
    allowed = "00:00 to 24:00" if end else "00:00 to 23:59"
    raise InvalidArgument("invalid_time", f"{value!r} is not a time of day HH:MM from {allowed}")


def format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _intervals(items: Sequence[IntervalText], what: str) -> list[Interval]:
    if len(items) > MAX_INTERVALS:
        raise InvalidArgument("too_many_intervals", f"at most {MAX_INTERVALS} {what} per staff member")
    parsed = []
    for item in items:
        if not 1 <= item.weekday <= 7:
            raise InvalidArgument(
                "invalid_weekday", f"weekday {item.weekday} is not 1 (Monday) to 7 (Sunday)"
            )
        start = time_of_day(item.start_time)
        stop = time_of_day(item.end_time, end=True)
        if start >= stop:
            raise InvalidArgument(
                "inverted_interval",
                f"{what} on weekday {item.weekday}: {item.start_time} is not before {item.end_time}",
            )
        parsed.append(Interval(item.weekday, start, stop))
    return sorted(parsed)


def _first_overlap(intervals: Sequence[Interval]) -> tuple[Interval, Interval] | None:
    """Two intervals of one weekday that overlap (intervals sorted); touching ones do not."""
    for before, after in itertools.pairwise(intervals):
        if before.weekday == after.weekday and after.start_minute < before.end_minute:
            return before, after
    return None


def _describe(interval: Interval) -> str:
    return (
        f"weekday {interval.weekday} {format_time(interval.start_minute)}-{format_time(interval.end_minute)}"
    )


def schedule(
    hours: Sequence[IntervalText], breaks: Sequence[IntervalText]
) -> tuple[tuple[Interval, ...], tuple[Interval, ...]]:
    """Validated weekly hours and breaks, each sorted by weekday and start."""
    clean_hours = _intervals(hours, "hours")
    clean_breaks = _intervals(breaks, "breaks")
    overlap = _first_overlap(clean_hours)
    if overlap is not None:
        raise InvalidArgument(
            "overlapping_hours", f"hours {_describe(overlap[0])} and {_describe(overlap[1])} overlap"
        )
    for pause in clean_breaks:
        if not any(
            h.weekday == pause.weekday
            and h.start_minute <= pause.start_minute
            and pause.end_minute <= h.end_minute
            for h in clean_hours
        ):
            raise InvalidArgument(
                "break_outside_hours", f"break {_describe(pause)} is not inside one interval of hours"
            )
    overlap = _first_overlap(clean_breaks)
    if overlap is not None:
        raise InvalidArgument(
            "overlapping_breaks", f"breaks {_describe(overlap[0])} and {_describe(overlap[1])} overlap"
        )
    return tuple(clean_hours), tuple(clean_breaks)


def duration(value: int) -> int:
    if not 1 <= value <= DURATION_MAX:
        raise InvalidArgument("invalid_duration", f"duration must be 1 to {DURATION_MAX} minutes")
    return value


def price(value: int) -> int:
    if value < 0:
        raise InvalidArgument("invalid_price", "price must not be negative")
    return value


def deposit(value: int, price_minor: int) -> int:
    """A deposit is part of the price: never negative, never more than the service costs."""
    if value < 0:
        raise InvalidArgument("invalid_deposit", "deposit must not be negative")
    if value > price_minor:
        raise InvalidArgument("invalid_deposit", "deposit must not exceed the price")
    return value


def free_cancellation_hours(value: int) -> int:
    if not 0 <= value <= FREE_CANCELLATION_HOURS_MAX:
        raise InvalidArgument(
            "invalid_free_cancellation_hours",
            f"free cancellation must be 0 to {FREE_CANCELLATION_HOURS_MAX} hours ahead",
        )
    return value


def buffer(value: int, which: str) -> int:
    if not 0 <= value <= BUFFER_MAX:
        raise InvalidArgument("invalid_buffer", f"buffer {which} must be 0 to {BUFFER_MAX} minutes")
    return value


def offsets(values: Sequence[int]) -> tuple[int, ...]:
    """Reminder offsets, largest (earliest reminder) first. None at all means: send no reminders."""
    if len(values) > OFFSETS_MAX_COUNT:
        raise InvalidArgument("invalid_offsets", f"at most {OFFSETS_MAX_COUNT} reminder offsets")
    if len(set(values)) != len(values):
        raise InvalidArgument("invalid_offsets", "reminder offsets must be unique")
    if any(not 1 <= v <= OFFSET_MAX for v in values):
        raise InvalidArgument("invalid_offsets", f"reminder offsets must be 1 to {OFFSET_MAX} minutes")
    return tuple(sorted(values, reverse=True))


def channels(values: Sequence[Channel | None]) -> tuple[Channel, ...]:
    known = [c for c in values if c is not None]
    if not values or len(known) != len(values):
        raise InvalidArgument("invalid_channels", "channels must name EMAIL or SMS, at least one")
    if len(set(known)) != len(known):
        raise InvalidArgument("invalid_channels", "channels must be unique")
    return tuple(known)


def quiet_hours(start: str, end: str) -> tuple[int | None, int | None]:
    """(start, end) minutes, or (None, None) for no quiet hours; start > end wraps midnight."""
    if not start and not end:
        return None, None
    try:
        first, last = time_of_day(start), time_of_day(end)
    except InvalidArgument as exc:
        raise InvalidArgument("invalid_quiet_hours", "quiet hours must both be HH:MM or both empty") from exc
    if first == last:
        raise InvalidArgument("invalid_quiet_hours", "quiet hours must not start and end at the same time")
    return first, last


def templates(values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > TEMPLATES_MAX_COUNT:
        raise InvalidArgument("invalid_templates", f"at most {TEMPLATES_MAX_COUNT} templates")
    clean = {}
    for key, value in values.items():
        text = value.strip()
        if not TEMPLATE_NAME_RE.match(key) or not text or len(text) > TEMPLATE_VALUE_MAX:
            raise InvalidArgument(
                "invalid_templates", f"template {key!r}: names are snake_case, values non-empty"
            )
        clean[key] = text
    return clean


def reason_text(value: str) -> str:
    text = value.strip()
    if len(text) > REASON_MAX:
        raise InvalidArgument("invalid_reason", f"reason must be at most {REASON_MAX} characters")
    return text
