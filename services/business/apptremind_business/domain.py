"""The business-service's domain values: plain frozen dataclasses, free of protobuf and SQL.

grpc.py and events.py convert them to and from the generated messages (convert.py); repository.py maps
them to rows. Times of day are minutes after midnight; instants are aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Business:
    business_id: uuid.UUID
    name: str
    slug: str
    time_zone: str
    locale: str
    currency: str
    owner_user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class BusinessDraft:
    """What a signup carries (auth.v1.BusinessDraft), not yet validated."""

    name: str
    slug: str
    time_zone: str
    locale: str
    currency: str


@dataclass(frozen=True, slots=True)
class BusinessChanges:
    """UpdateBusiness input: empty strings leave a field unchanged."""

    name: str = ""
    time_zone: str = ""
    locale: str = ""
    currency: str = ""


@dataclass(frozen=True, slots=True)
class Staff:
    staff_id: uuid.UUID
    business_id: uuid.UUID
    name: str
    email: str
    user_id: uuid.UUID | None
    active: bool = True


@dataclass(frozen=True, slots=True)
class StaffDraft:
    name: str
    email: str = ""
    user_id: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A weekly wall-clock interval: ISO weekday and [start, end) in minutes after midnight."""

    weekday: int
    start_minute: int
    end_minute: int


@dataclass(frozen=True, slots=True)
class IntervalText:
    """An interval as the API states it ("HH:MM"), before validation."""

    weekday: int
    start_time: str
    end_time: str


@dataclass(frozen=True, slots=True)
class Schedule:
    business_id: uuid.UUID
    staff_id: uuid.UUID
    hours: tuple[Interval, ...]
    breaks: tuple[Interval, ...]


class OverrideKind(enum.StrEnum):
    TIME_OFF = "time_off"
    HOLIDAY = "holiday"
    EXTRA_HOURS = "extra_hours"


@dataclass(frozen=True, slots=True)
class DateOverride:
    override_id: uuid.UUID
    business_id: uuid.UUID
    # None for a business-wide holiday.
    staff_id: uuid.UUID | None
    kind: OverrideKind
    start_time: dt.datetime
    end_time: dt.datetime
    reason: str


@dataclass(frozen=True, slots=True)
class DateOverrideDraft:
    staff_id: str
    # None when the request named no known kind.
    kind: OverrideKind | None
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    service_id: uuid.UUID
    business_id: uuid.UUID
    name: str
    duration_minutes: int
    price_minor: int
    currency: str
    buffer_before_minutes: int
    buffer_after_minutes: int
    staff_ids: tuple[uuid.UUID, ...]
    active: bool = True
    # The paid booking saga: a deposit held at booking, refunded on cancellation this many hours ahead.
    deposit_minor: int = 0
    free_cancellation_hours: int = 0


@dataclass(frozen=True, slots=True)
class ServiceDraft:
    name: str
    duration_minutes: int
    price_minor: int
    buffer_before_minutes: int = 0
    buffer_after_minutes: int = 0
    staff_ids: Sequence[str] = ()
    deposit_minor: int = 0
    free_cancellation_hours: int = 0


@dataclass(frozen=True, slots=True)
class ServicePatch:
    """UpdateService input: None leaves a field unchanged."""

    name: str | None = None
    duration_minutes: int | None = None
    price_minor: int | None = None
    buffer_before_minutes: int | None = None
    buffer_after_minutes: int | None = None
    staff_ids: Sequence[str] | None = None
    active: bool | None = None
    deposit_minor: int | None = None
    free_cancellation_hours: int | None = None


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    business_id: uuid.UUID
    offsets_minutes: tuple[int, ...]
    channels: tuple[Channel, ...]
    # Both None: no quiet hours. start > end wraps midnight.
    quiet_hours_start: int | None
    quiet_hours_end: int | None
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReminderPolicyDraft:
    offsets_minutes: Sequence[int]
    # None stands for a channel value the API does not know.
    channels: Sequence[Channel | None]
    quiet_hours_start: str
    quiet_hours_end: str
    templates: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    # Empty on the last page.
    next_page_token: str = ""
