"""Input rules more than one service applies to the same values (a business's name, slug, time zone,
locale, currency), so a sign-up the auth-service accepts is one the business-service accepts too.

Each function returns the clean value or raises InvalidArgument with a machine-readable reason.
"""

from __future__ import annotations

import functools
import re
import zoneinfo

from .errors import InvalidArgument

NAME_MAX = 200
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")
SLUG_MAX = 63
# BCP 47, the subset a booking page needs: language, optionally a region ("en", "en-US", "es-419").
LOCALE_RE = re.compile(r"^[a-z]{2,3}(?:-(?:[A-Z]{2}|[0-9]{3}))?$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Files the system zone database carries that are not IANA zone names.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zones() -> frozenset[str]:
    # The set of names, not ZoneInfo(name): ZoneInfo also opens arbitrary relative paths under the tz dirs.
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def name(value: str, reason: str = "invalid_name", what: str = "name") -> str:
    text = value.strip()
    if not text or len(text) > NAME_MAX or any(ord(c) < 32 for c in text):
        raise InvalidArgument(reason, f"{what} must be 1 to {NAME_MAX} printable characters")
    return text


def slug(value: str) -> str:
    text = value.strip().lower()
    if not SLUG_RE.match(text):
        raise InvalidArgument(
            "invalid_slug", "slug must be 3 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"
        )
    return text


def time_zone(value: str) -> str:
    if value not in _zones():
        raise InvalidArgument("invalid_time_zone", f"{value!r} is not an IANA time zone name")
    return value


def locale(value: str) -> str:
    if not LOCALE_RE.match(value):
        raise InvalidArgument("invalid_locale", f"{value!r} is not a locale such as 'en' or 'en-US'")
    return value


def currency(value: str) -> str:
    if not CURRENCY_RE.match(value):
        raise InvalidArgument("invalid_currency", f"{value!r} is not an ISO 4217 code such as 'EUR'")
    return value
