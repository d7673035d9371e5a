"""Billing periods are calendar months in UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apptremind_billing.usage import period_of


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_mid_month() -> None:
    assert period_of(utc(2030, 6, 10, 12)) == (utc(2030, 6, 1), utc(2030, 7, 1))


def test_december_rolls_into_the_next_year() -> None:
    assert period_of(utc(2030, 12, 31, 23, 59)) == (utc(2030, 12, 1), utc(2031, 1, 1))


def test_local_times_are_taken_in_utc() -> None:
    # 00:30 on 1 July in Berlin is still June in UTC.
    local = dt.datetime(2030, 7, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert period_of(local) == (utc(2030, 6, 1), utc(2030, 7, 1))
