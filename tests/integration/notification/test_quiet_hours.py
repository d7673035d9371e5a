"""The quiet-hours rule of late SMS reminders: a wall-clock window in the business's zone, across midnight
and across DST changes."""

from __future__ import annotations

import datetime as dt

import pytest

from apptremind_notification.dispatch import in_quiet_hours


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("now", "zone", "window", "quiet"),
    [
        # 22:30 and 07:59 in Berlin (summer, UTC+2) are inside 21:00-08:00; 08:00 and 20:59 are not.
        (utc(2030, 6, 3, 20, 30), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 6, 4, 5, 59), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 6, 4, 6, 0), "Europe/Berlin", ("21:00", "08:00"), False),
        (utc(2030, 6, 3, 18, 59), "Europe/Berlin", ("21:00", "08:00"), False),
        # The same UTC instant one hour later in winter (UTC+1): 20:30 local, not yet quiet.
        (utc(2030, 1, 7, 19, 30), "Europe/Berlin", ("21:00", "08:00"), False),
        # The night clocks go forward (2030-03-31, 02:00 -> 03:00): 03:30 CEST is quiet, 08:00 CEST is not.
        (utc(2030, 3, 31, 1, 30), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 3, 31, 6, 0), "Europe/Berlin", ("21:00", "08:00"), False),
        # The night clocks go back (2030-10-27, 03:00 -> 02:00): both 02:30s are quiet; 07:59 CET still is.
        (utc(2030, 10, 27, 0, 30), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 10, 27, 1, 30), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 10, 27, 6, 59), "Europe/Berlin", ("21:00", "08:00"), True),
        (utc(2030, 10, 27, 7, 0), "Europe/Berlin", ("21:00", "08:00"), False),
        # A window within one day.
        (utc(2030, 6, 3, 12, 15), "UTC", ("12:00", "13:00"), True),
        (utc(2030, 6, 3, 13, 0), "UTC", ("12:00", "13:00"), False),
        # No window, or a malformed one, is never quiet.
        (utc(2030, 6, 3, 23, 0), "UTC", ("", ""), False),
        (utc(2030, 6, 3, 23, 0), "UTC", ("late", "early"), False),
        # An unknown zone is read as UTC, not as "no quiet hours".
        (utc(2030, 6, 3, 23, 0), "Mars/Olympus", ("21:00", "08:00"), True),
    ],
)
def test_quiet_hours(now: dt.datetime, zone: str, window: tuple[str, str], quiet: bool) -> None:
    assert in_quiet_hours(now, zone, *window) is quiet
