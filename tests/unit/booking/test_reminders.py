"""Reminder plans (apptremind_booking.reminders): offsets, quiet hours, DST, dedupe, keys and reschedule diffs.

Pure and table-driven. Expected instants are written in UTC with the business-local reading in a comment, so
each row states both the rule and the arithmetic. DST days used: Europe/Berlin 2026-03-29 (02:00 CET -> 03:00
CEST at 01:00 UTC) and 2026-10-25 (03:00 CEST -> 02:00 CET at 01:00 UTC); America/New_York 2026-03-08
(02:00 EST -> 03:00 EDT at 07:00 UTC) and 2026-11-01 (02:00 EDT -> 01:00 EST at 06:00 UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from apptremind_booking.reminders import (
    QUIET_HOURS_MARGIN,
    Channel,
    PlannedReminder,
    ReminderPolicy,
    diff_plans,
    idempotency_key,
    plan_reminders,
)

APPT = "0190c3b2-7d4e-7a1b-9c2d-3e4f5a6b7c8d"
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
EMAIL = "ada@example.com"
PHONE = "+4915112345678"
BOTH = {"email": EMAIL, "sms": PHONE}
NIGHT = (time(21), time(8))
H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def at(zone: str, y: int, mo: int, d: int, h: int, mi: int = 0, *, fold: int = 0) -> datetime:
    """A business-local start; passed as-is (not UTC) so wall-clock arithmetic on it would show up."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone), fold=fold)


def policy(
    *offsets: timedelta,
    channels: tuple[Channel, ...] = ("email",),
    quiet: tuple[time, time] | None = None,
    zone: str = BERLIN,
) -> ReminderPolicy:
    return ReminderPolicy(
        offsets=offsets,
        channels=channels,
        quiet_start=quiet[0] if quiet else None,
        quiet_end=quiet[1] if quiet else None,
        time_zone=zone,
    )


@dataclass(frozen=True)
class Case:
    id: str
    start: datetime
    policy: ReminderPolicy
    expected: list[tuple[datetime, str]]
    now: datetime = LONG_AGO
    recipients: Mapping[str, str] = field(default_factory=lambda: BOTH)


CASES = [
    # --- plain days (Berlin in June is CEST, UTC+2) ---
    Case(
        "plain-24h-and-2h",
        at(BERLIN, 2026, 6, 10, 15),
        policy(24 * H, 2 * H),
        [(utc(2026, 6, 9, 13), "email"), (utc(2026, 6, 10, 11), "email")],
    ),
    Case(
        "ordered-by-time-then-channel",
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, 24 * H, channels=("sms", "email")),
        [
            (utc(2026, 6, 9, 13), "email"),
            (utc(2026, 6, 9, 13), "sms"),
            (utc(2026, 6, 10, 11), "email"),
            (utc(2026, 6, 10, 11), "sms"),
        ],
    ),
    Case(
        "start-given-in-another-zone",  # same instant as plain-24h, expressed in Tokyo time
        datetime(2026, 6, 10, 22, tzinfo=ZoneInfo("Asia/Tokyo")),
        policy(24 * H),
        [(utc(2026, 6, 9, 13), "email")],
    ),
    Case(
        "sub-second-start-floored",
        datetime(2026, 6, 10, 13, 0, 0, 750_000, tzinfo=UTC),
        policy(2 * H),
        [(utc(2026, 6, 10, 11), "email")],
    ),
    # --- quiet hours 21:00-08:00, wrapping midnight ---
    Case(
        "quiet-07:00-moves-to-20:59-evening-before",
        at(BERLIN, 2026, 6, 10, 9),
        policy(2 * H, quiet=NIGHT),
        [(utc(2026, 6, 9, 18, 59), "email")],  # 20:59 CEST
    ),
    Case(
        "quiet-23:00-before-midnight-moves-to-20:59-same-evening",
        at(BERLIN, 2026, 6, 11, 9),
        policy(10 * H, quiet=NIGHT),
        [(utc(2026, 6, 10, 18, 59), "email")],
    ),
    Case(
        "quiet-end-08:00-is-allowed",
        at(BERLIN, 2026, 6, 10, 10),
        policy(2 * H, quiet=NIGHT),
        [(utc(2026, 6, 10, 6), "email")],
    ),
    Case(
        "quiet-last-second-07:59:59-moved",
        at(BERLIN, 2026, 6, 10, 10),
        policy(2 * H + S, quiet=NIGHT),
        [(utc(2026, 6, 9, 18, 59), "email")],
    ),
    Case(
        "margin-band-20:59:30-moved-to-20:59:00",
        at(BERLIN, 2026, 6, 10, 23),
        policy(2 * H + 30 * S, quiet=NIGHT),
        [(utc(2026, 6, 10, 18, 59), "email")],
    ),
    Case(
        "at-margin-20:59:00-untouched-20:58:59-untouched",
        at(BERLIN, 2026, 6, 10, 23),
        policy(2 * H + M, 2 * H + M + S, quiet=NIGHT),
        [(utc(2026, 6, 10, 18, 58, 59), "email"), (utc(2026, 6, 10, 18, 59), "email")],
    ),
    Case(
        "evening-outside-quiet-untouched",
        at(BERLIN, 2026, 6, 10, 20),
        policy(2 * H, quiet=NIGHT),
        [(utc(2026, 6, 10, 16), "email")],
    ),
    Case(
        "quiet-evaluated-on-business-clock-not-utc",  # 22:00 New York is 02:00 UTC: quiet there, not in UTC
        at(NEW_YORK, 2026, 6, 10, 23),
        policy(1 * H, zone=NEW_YORK, quiet=NIGHT),
        [(utc(2026, 6, 11, 0, 59), "email")],  # 20:59 EDT
    ),
    Case(
        "equal-quiet-bounds-mean-no-quiet-hours",
        at(BERLIN, 2026, 6, 10, 5),
        policy(2 * H, quiet=(time(8), time(8))),
        [(utc(2026, 6, 10, 1), "email")],  # 03:00 CEST, untouched
    ),
    Case(
        "margin-reaches-back-into-the-previous-day-for-a-midnight-start",
        at(BERLIN, 2026, 6, 11, 7),  # quiet 00:00-06:00; reminder 23:59:30 the day before
        policy(7 * H + 30 * S, quiet=(time(0), time(6))),
        [(utc(2026, 6, 10, 21, 59), "email")],  # 23:59 CEST
    ),
    Case(
        "moved-again-when-the-allowed-hour-is-the-dst-gap",
        # Quiet 03:00-02:00 allows only 02:00-03:00, which does not exist on 2026-03-29: 05:00 CEST moves to
        # 01:59 CET on the 29th, still quiet (the night before ends at the gap end, 03:00 CEST), so on to 02:59 CET
        # on the 28th, the latest allowed instant.
        at(BERLIN, 2026, 3, 29, 7),
        policy(2 * H, quiet=(time(3), time(2))),
        [(utc(2026, 3, 28, 1, 59), "email")],
    ),
    Case(
        "no-allowed-time-at-all-plans-nothing",  # allowed 12:59:00-12:59:30 daily, shorter than the margin
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, 24 * H, quiet=(time(12, 59, 30), time(12, 59))),
        [],
    ),
    Case(
        "equal-quiet-bounds-in-the-repeated-hour-still-no-quiet-hours",
        at(BERLIN, 2026, 10, 25, 4),  # 03:00 UTC; reminder 02:45 CEST, between the two 02:30s
        policy(2 * H + 15 * M, quiet=(time(2, 30), time(2, 30))),
        [(utc(2026, 10, 25, 0, 45), "email")],
    ),
    # --- non-wrapping quiet window 12:00-13:00 ---
    Case(
        "lunch-12:30-moves-to-11:59",
        at(BERLIN, 2026, 6, 10, 14),
        policy(90 * M, quiet=(time(12), time(13))),
        [(utc(2026, 6, 10, 9, 59), "email")],
    ),
    Case(
        "lunch-end-13:00-allowed-11:00-untouched",
        at(BERLIN, 2026, 6, 10, 14),
        policy(1 * H, 3 * H, quiet=(time(12), time(13))),
        [(utc(2026, 6, 10, 9), "email"), (utc(2026, 6, 10, 11), "email")],
    ),
    Case(
        "lunch-window-does-not-cover-the-night",
        at(BERLIN, 2026, 6, 10, 14),
        policy(12 * H, quiet=(time(12), time(13))),
        [(utc(2026, 6, 10, 0), "email")],  # 02:00 CEST
    ),
    # --- offsets are absolute time across DST changes ---
    Case(
        "berlin-spring-24h-is-24-real-hours",
        at(BERLIN, 2026, 3, 29, 12),  # 10:00 UTC
        policy(24 * H),
        [(utc(2026, 3, 28, 10), "email")],  # 11:00 CET, not 12:00
    ),
    Case(
        "berlin-spring-2h-across-the-gap",
        at(BERLIN, 2026, 3, 29, 3, 30),  # 01:30 UTC
        policy(2 * H),
        [(utc(2026, 3, 28, 23, 30), "email")],  # 00:30 CET: three wall-clock hours, two real ones
    ),
    Case(
        "berlin-fall-24h-is-24-real-hours",
        at(BERLIN, 2026, 10, 25, 12),  # 11:00 UTC
        policy(24 * H),
        [(utc(2026, 10, 24, 11), "email")],  # 13:00 CEST, not 12:00
    ),
    Case(
        "new-york-spring-24h-is-24-real-hours",
        at(NEW_YORK, 2026, 3, 8, 12),  # 16:00 UTC
        policy(24 * H, zone=NEW_YORK),
        [(utc(2026, 3, 7, 16), "email")],  # 11:00 EST
    ),
    Case(
        "new-york-fall-24h-is-24-real-hours",
        at(NEW_YORK, 2026, 11, 1, 12),  # 17:00 UTC
        policy(24 * H, zone=NEW_YORK),
        [(utc(2026, 10, 31, 17), "email")],  # 13:00 EDT
    ),
    # --- quiet hours 21:00-08:00 on DST nights ---
    Case(
        "berlin-spring-night-quiet-moves-to-20:59-cet",
        at(BERLIN, 2026, 3, 29, 9),  # 07:00 UTC; reminder 07:00 CEST
        policy(2 * H, quiet=NIGHT),
        [(utc(2026, 3, 28, 19, 59), "email")],
    ),
    Case(
        "berlin-spring-quiet-end-is-08:00-cest",
        at(BERLIN, 2026, 3, 29, 10),  # reminders 08:00 CEST (allowed) and 07:59:59 CEST (moved)
        policy(2 * H, 2 * H + S, quiet=NIGHT),
        [(utc(2026, 3, 28, 19, 59), "email"), (utc(2026, 3, 29, 6), "email")],
    ),
    Case(
        "berlin-fall-night-quiet-end-08:00-cet-and-moved-to-20:59-cest",
        at(BERLIN, 2026, 10, 25, 10),  # 09:00 UTC; reminders 08:00 CET (allowed) and 07:59 CET (moved)
        policy(2 * H, 2 * H + M, quiet=NIGHT),
        [(utc(2026, 10, 24, 18, 59), "email"), (utc(2026, 10, 25, 7), "email")],
    ),
    Case(
        "new-york-spring-night-quiet",
        at(NEW_YORK, 2026, 3, 8, 9),  # 13:00 UTC; reminders 06:00 EDT (moved) and 08:00 EDT (allowed)
        policy(3 * H, 1 * H, zone=NEW_YORK, quiet=NIGHT),
        [(utc(2026, 3, 8, 1, 59), "email"), (utc(2026, 3, 8, 12), "email")],  # 20:59 EST the 7th
    ),
    Case(
        "new-york-fall-night-quiet",
        at(NEW_YORK, 2026, 11, 1, 8, 30),  # 13:30 UTC; reminders 08:00 EST (allowed) and 07:30 EST (moved)
        policy(30 * M, 1 * H, zone=NEW_YORK, quiet=NIGHT),
        [(utc(2026, 11, 1, 0, 59), "email"), (utc(2026, 11, 1, 13), "email")],  # 20:59 EDT the 31st
    ),
    # --- quiet bounds that fall inside the DST gap: resolved to the first instant after the gap ---
    Case(
        "berlin-gap-quiet-start-02:30-begins-at-03:00-cest",
        at(BERLIN, 2026, 3, 29, 7),  # 05:00 UTC; reminders 05:00 CEST (moved) and 01:58 CET (allowed)
        policy(2 * H, 4 * H + 2 * M, quiet=(time(2, 30), time(6))),
        [(utc(2026, 3, 29, 0, 58), "email"), (utc(2026, 3, 29, 0, 59), "email")],  # 01:59 CET
    ),
    Case(
        "berlin-gap-quiet-end-02:30-ends-at-03:00-cest",
        at(BERLIN, 2026, 3, 29, 5),  # 03:00 UTC; reminders 03:00 CEST (allowed) and 01:59:59 CET (moved)
        policy(2 * H, 2 * H + S, quiet=(time(23), time(2, 30))),
        [(utc(2026, 3, 28, 21, 59), "email"), (utc(2026, 3, 29, 1), "email")],  # 22:59 CET the 28th
    ),
    Case(
        "new-york-gap-quiet-start-02:30-begins-at-03:00-edt",
        at(NEW_YORK, 2026, 3, 8, 7),  # 11:00 UTC; reminder 05:00 EDT
        policy(2 * H, zone=NEW_YORK, quiet=(time(2, 30), time(6))),
        [(utc(2026, 3, 8, 6, 59), "email")],  # 01:59 EST
    ),
    Case(
        "quiet-window-inside-the-gap-is-empty-that-day",  # 02:15-02:45 never happens on 2026-03-29
        at(BERLIN, 2026, 3, 29, 4),  # 02:00 UTC; reminder 01:59:30 CET, just before the gap, stays
        policy(1 * H + 30 * S, quiet=(time(2, 15), time(2, 45))),
        [(utc(2026, 3, 29, 0, 59, 30), "email")],
    ),
    # --- quiet bounds in the repeated hour: start at the first occurrence, end at the last ---
    Case(
        "berlin-overlap-quiet-start-02:30-is-the-first-one",
        at(BERLIN, 2026, 10, 25, 7),  # 06:00 UTC; reminder 01:15 UTC = 02:15 CET, after the first 02:30 CEST
        policy(4 * H + 45 * M, quiet=(time(2, 30), time(6))),
        [(utc(2026, 10, 25, 0, 29), "email")],  # 02:29 CEST
    ),
    Case(
        "berlin-overlap-quiet-end-02:30-is-the-last-one",
        at(BERLIN, 2026, 10, 25, 5),  # 04:00 UTC; reminders 02:45 CEST (moved) and 02:30 CET (allowed)
        policy(3 * H + 15 * M, 2 * H + 30 * M, quiet=(time(22), time(2, 30))),
        [(utc(2026, 10, 24, 19, 59), "email"), (utc(2026, 10, 25, 1, 30), "email")],  # 21:59 CEST the 24th
    ),
    Case(
        "new-york-overlap-quiet-end-01:30-is-the-last-one",
        at(NEW_YORK, 2026, 11, 1, 4),  # 09:00 UTC; reminders 01:00 EST (moved) and 01:30 EST (allowed)
        policy(3 * H, 2 * H + 30 * M, zone=NEW_YORK, quiet=(time(22), time(1, 30))),
        [(utc(2026, 11, 1, 1, 59), "email"), (utc(2026, 11, 1, 6, 30), "email")],  # 21:59 EDT the 31st
    ),
    # --- reminders already due when booked ---
    Case(
        "already-due-dropped",
        at(BERLIN, 2026, 6, 10, 15),
        policy(24 * H, 2 * H),
        [(utc(2026, 6, 10, 11), "email")],
        now=utc(2026, 6, 10, 8),
    ),
    Case(
        "due-exactly-now-dropped",
        at(BERLIN, 2026, 6, 10, 15),
        policy(24 * H, 2 * H),
        [(utc(2026, 6, 10, 11), "email")],
        now=utc(2026, 6, 9, 13),
    ),
    Case(
        "due-one-second-after-now-kept",
        at(BERLIN, 2026, 6, 10, 15),
        policy(24 * H, 2 * H),
        [(utc(2026, 6, 9, 13), "email"), (utc(2026, 6, 10, 11), "email")],
        now=utc(2026, 6, 9, 12, 59, 59),
    ),
    Case(
        "moved-into-the-past-by-quiet-hours-dropped",  # booked 21:30 for 07:00: the 20:59 move has passed
        at(BERLIN, 2026, 6, 10, 7),
        policy(2 * H, quiet=NIGHT),
        [],
        now=utc(2026, 6, 9, 19, 30),
    ),
    Case(
        "appointment-in-the-past-plans-nothing",
        at(BERLIN, 2026, 6, 10, 7),
        policy(2 * H),
        [],
        now=utc(2026, 6, 10, 6),
    ),
    # --- collisions after the quiet-hours move: one per (instant, channel) ---
    Case(
        "collapsed-offsets-deduped-per-channel",
        at(BERLIN, 2026, 6, 10, 7),  # 9 h -> 22:00, 10 h -> 21:00: both move to 20:59 the evening before
        policy(9 * H, 10 * H, 24 * H, 24 * H, channels=("email", "sms"), quiet=NIGHT),
        [
            (utc(2026, 6, 8, 18, 59), "email"),
            (utc(2026, 6, 8, 18, 59), "sms"),
            (utc(2026, 6, 9, 18, 59), "email"),
            (utc(2026, 6, 9, 18, 59), "sms"),
        ],
    ),
    # --- recipients ---
    Case(
        "sms-without-recipient-skipped",
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, channels=("email", "sms")),
        [(utc(2026, 6, 10, 11), "email")],
        recipients={"email": EMAIL},
    ),
    Case(
        "blank-recipient-skipped",
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, channels=("email", "sms")),
        [(utc(2026, 6, 10, 11), "sms")],
        recipients={"email": "  ", "sms": PHONE},
    ),
    Case(
        "no-recipients-plans-nothing",
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, channels=("email", "sms")),
        [],
        recipients={},
    ),
    Case(
        "recipient-for-unused-channel-ignored",
        at(BERLIN, 2026, 6, 10, 15),
        policy(2 * H, channels=("sms",)),
        [(utc(2026, 6, 10, 11), "sms")],
    ),
]


def plan(case: Case) -> list[PlannedReminder]:
    return plan_reminders(
        appointment_id=APPT, start=case.start, policy=case.policy, now=case.now, recipients=case.recipients
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    assert [(r.remind_at, r.channel) for r in plan(case)] == case.expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_invariants(case: Case) -> None:
    for r in plan(case):
        assert r.remind_at.tzinfo is UTC
        assert r.remind_at.microsecond == 0
        assert case.now < r.remind_at < case.start
        assert r.idempotency_key == idempotency_key(APPT, r.remind_at, r.channel)
        # Quiet hours only ever move a reminder earlier. (Subtract in UTC: `zoned - timedelta` is wall-clock
        # arithmetic, the very trap the module avoids.)
        assert r.remind_at <= case.start.astimezone(UTC) - r.offset


def test_24h_reminder_keeps_real_hours_not_wall_clock() -> None:
    start = at(BERLIN, 2026, 3, 29, 12)
    [r] = plan(Case("", start, policy(24 * H), []))
    assert start - r.remind_at == 24 * H  # aware subtraction across zones is absolute
    assert r.remind_at.astimezone(ZoneInfo(BERLIN)).time() == time(11)  # wall clock moved by the DST hour


def test_collision_keeps_the_largest_offset() -> None:
    reminders = plan(Case("", at(BERLIN, 2026, 6, 10, 7), policy(9 * H, 10 * H, quiet=NIGHT), []))
    assert [(r.remind_at, r.offset) for r in reminders] == [(utc(2026, 6, 9, 18, 59), 10 * H)]


def test_offsets_reported_and_margin_is_one_minute() -> None:
    reminders = plan(CASES[0])
    assert [r.offset for r in reminders] == [24 * H, 2 * H]
    assert QUIET_HOURS_MARGIN == M


def test_planning_twice_gives_the_same_plan_and_keys() -> None:
    first = plan(CASES[1])
    second = plan(CASES[1])
    assert first == second
    assert [r.idempotency_key for r in first] == [
        f"{APPT}|2026-06-09T13:00:00Z|email",
        f"{APPT}|2026-06-09T13:00:00Z|sms",
        f"{APPT}|2026-06-10T11:00:00Z|email",
        f"{APPT}|2026-06-10T11:00:00Z|sms",
    ]


@pytest.mark.parametrize(
    ("remind_at", "channel", "expected"),
    [
        pytest.param(utc(2026, 3, 28, 10), "email", f"{APPT}|2026-03-28T10:00:00Z|email", id="utc"),
        pytest.param(
            at(BERLIN, 2026, 3, 28, 11), "sms", f"{APPT}|2026-03-28T10:00:00Z|sms", id="zoned-normalised"
        ),
        pytest.param(
            datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=-5))),
            "sms",
            f"{APPT}|2026-11-01T06:30:00Z|sms",
            id="fixed-offset",
        ),
        pytest.param(
            datetime(2026, 6, 9, 13, 0, 5, 999_999, tzinfo=UTC),
            "email",
            f"{APPT}|2026-06-09T13:00:05Z|email",
            id="sub-second-dropped",
        ),
        pytest.param(
            at(BERLIN, 2026, 10, 25, 2, 30, fold=1), "email", f"{APPT}|2026-10-25T01:30:00Z|email", id="fold"
        ),
    ],
)
def test_idempotency_key_format(remind_at: datetime, channel: str, expected: str) -> None:
    assert idempotency_key(APPT, remind_at, channel) == expected


def reschedule_plans() -> tuple[list[PlannedReminder], list[PlannedReminder]]:
    # 24 h and 2 h with night quiet hours: moving 09:00 -> 09:30 moves the 24 h reminder (09:00 -> 09:30 CEST the
    # day before) but both 2 h reminders (07:00 / 07:30, quiet) land on 20:59 the evening before.
    rules = policy(24 * H, 2 * H, quiet=NIGHT)
    old = plan(Case("", at(BERLIN, 2026, 6, 10, 9), rules, []))
    new = plan(Case("", at(BERLIN, 2026, 6, 10, 9, 30), rules, []))
    return old, new


def test_diff_plans_reschedule_keeps_one_and_moves_another() -> None:
    old, new = reschedule_plans()
    to_cancel, to_request = diff_plans(old, new)
    assert [r.idempotency_key for r in to_cancel] == [f"{APPT}|2026-06-09T07:00:00Z|email"]
    assert [r.idempotency_key for r in to_request] == [f"{APPT}|2026-06-09T07:30:00Z|email"]
    kept = {r.idempotency_key for r in old} & {r.idempotency_key for r in new}
    assert kept == {f"{APPT}|2026-06-09T18:59:00Z|email"}


@pytest.mark.parametrize(
    ("pick", "expected"),
    [
        pytest.param(lambda old, new: (old, old), lambda old, new: ([], []), id="unchanged"),
        pytest.param(lambda old, new: (old, []), lambda old, new: (old, []), id="cancel"),
        pytest.param(lambda old, new: ([], new), lambda old, new: ([], new), id="new-booking"),
        pytest.param(
            lambda old, new: (old + old, list(reversed(new)) + new),
            lambda old, new: ([old[0]], [new[0]]),
            id="duplicates-and-order",
        ),
    ],
)
def test_diff_plans_table(pick: Any, expected: Any) -> None:
    old, new = reschedule_plans()
    assert diff_plans(*pick(old, new)) == expected(old, new)


GOOD = policy(2 * H)
START = at(BERLIN, 2026, 6, 10, 15)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: plan_reminders(
                appointment_id=APPT,
                start=datetime(2026, 6, 10, 15),
                policy=GOOD,
                now=LONG_AGO,
                recipients=BOTH,
            ),
            "start must be timezone-aware",
            id="naive-start",
        ),
        pytest.param(
            lambda: plan_reminders(
                appointment_id=APPT, start=START, policy=GOOD, now=datetime(2026, 1, 1), recipients=BOTH
            ),
            "now must be timezone-aware",
            id="naive-now",
        ),
        pytest.param(
            lambda: policy(2 * H, zone="Mars/Olympus_Mons"), "unknown IANA time zone", id="unknown-zone"
        ),
        pytest.param(lambda: policy(2 * H, zone=""), "unknown IANA time zone", id="empty-zone"),
        pytest.param(lambda: policy(2 * H, zone="Europe"), "unknown IANA time zone", id="zone-directory"),
        pytest.param(lambda: policy(2 * H, timedelta(0)), "must be positive", id="zero-offset"),
        pytest.param(lambda: policy(-2 * H), "must be positive", id="negative-offset"),
        pytest.param(
            lambda: policy(2 * H, channels=cast(Any, ("email", "fax"))),
            "unknown reminder channel",
            id="channel",
        ),
        pytest.param(
            lambda: ReminderPolicy(
                offsets=(H,), channels=("email",), quiet_start=time(21), quiet_end=None, time_zone=BERLIN
            ),
            "both be set or both be None",
            id="half-quiet-hours",
        ),
        pytest.param(
            lambda: policy(H, quiet=(time(21, tzinfo=UTC), time(8))),
            "must not carry a tzinfo",
            id="aware-quiet",
        ),
        pytest.param(
            lambda: idempotency_key(APPT, datetime(2026, 6, 10, 11), "email"),
            "remind_at must be timezone-aware",
            id="key-naive",
        ),
        pytest.param(
            lambda: idempotency_key("", utc(2026, 6, 10, 11), "email"), "appointment_id", id="key-empty-id"
        ),
        pytest.param(
            lambda: plan_reminders(
                appointment_id="a|b", start=START, policy=GOOD, now=LONG_AGO, recipients=BOTH
            ),
            "appointment_id",
            id="separator-in-id",
        ),
        pytest.param(
            lambda: idempotency_key(APPT, utc(2026, 6, 10, 11), "e|mail"), "channel", id="key-channel"
        ),
    ],
)
def test_invalid_input_raises_value_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
