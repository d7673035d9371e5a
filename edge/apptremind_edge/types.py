"""GraphQL types of the edge and their conversion from the services' proto messages (one place each)."""

from __future__ import annotations

import datetime as dt
import enum

import strawberry

from apptremind_gen.apptremind.auth import v1 as auth
from apptremind_gen.apptremind.business import v1 as business
from apptremind_gen.apptremind.common.v1 import Channel as ProtoChannel


@strawberry.enum
class Role(enum.Enum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    STAFF = "STAFF"


ROLE_TO_PROTO = {Role.OWNER: auth.Role.OWNER, Role.ADMIN: auth.Role.ADMIN, Role.STAFF: auth.Role.STAFF}
ROLE_FROM_PROTO = {v: k for k, v in ROLE_TO_PROTO.items()}


@strawberry.enum
class Channel(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"


CHANNEL_TO_PROTO = {Channel.EMAIL: ProtoChannel.EMAIL, Channel.SMS: ProtoChannel.SMS}
CHANNEL_FROM_PROTO = {v: k for k, v in CHANNEL_TO_PROTO.items()}


@strawberry.enum
class DateOverrideKind(enum.Enum):
    TIME_OFF = "TIME_OFF"
    HOLIDAY = "HOLIDAY"
    EXTRA_HOURS = "EXTRA_HOURS"


KIND_TO_PROTO = {
    DateOverrideKind.TIME_OFF: business.DateOverrideKind.TIME_OFF,
    DateOverrideKind.HOLIDAY: business.DateOverrideKind.HOLIDAY,
    DateOverrideKind.EXTRA_HOURS: business.DateOverrideKind.EXTRA_HOURS,
}
KIND_FROM_PROTO = {v: k for k, v in KIND_TO_PROTO.items()}


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool

    @classmethod
    def after(cls, next_page_token: str) -> PageInfo:
        return cls(end_cursor=next_page_token or None, has_next_page=bool(next_page_token))


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    created_at: dt.datetime | None

    @classmethod
    def of(cls, user: auth.User | None) -> User:
        assert user is not None
        return cls(id=strawberry.ID(user.user_id), email=user.email, created_at=user.created_at)


@strawberry.type
class Membership:
    business_id: strawberry.ID
    user_id: strawberry.ID
    role: Role

    @classmethod
    def of(cls, m: auth.Membership | None) -> Membership:
        assert m is not None
        return cls(
            business_id=strawberry.ID(m.business_id),
            user_id=strawberry.ID(m.user_id),
            role=ROLE_FROM_PROTO[m.role],
        )


@strawberry.type
class Session:
    access_token: str
    access_token_expires_at: dt.datetime | None
    refresh_token: str
    refresh_token_expires_at: dt.datetime | None

    @classmethod
    def of(cls, s: auth.Session | None) -> Session:
        assert s is not None
        return cls(
            access_token=s.access_token,
            access_token_expires_at=s.access_token_expires_at,
            refresh_token=s.refresh_token,
            refresh_token_expires_at=s.refresh_token_expires_at,
        )


@strawberry.type
class Invitation:
    id: strawberry.ID
    business_id: strawberry.ID
    email: str
    role: Role
    expires_at: dt.datetime | None

    @classmethod
    def of(cls, i: auth.Invitation | None) -> Invitation:
        assert i is not None
        return cls(
            id=strawberry.ID(i.invitation_id),
            business_id=strawberry.ID(i.business_id),
            email=i.email,
            role=ROLE_FROM_PROTO[i.role],
            expires_at=i.expires_at,
        )


@strawberry.type
class Staff:
    id: strawberry.ID
    name: str
    email: str
    user_id: strawberry.ID | None
    active: bool

    @classmethod
    def of(cls, s: business.Staff | None) -> Staff:
        assert s is not None
        return cls(
            id=strawberry.ID(s.staff_id),
            name=s.name,
            email=s.email,
            user_id=strawberry.ID(s.user_id) if s.user_id else None,
            active=s.active,
        )


@strawberry.type
class WeeklyInterval:
    weekday: int
    start_time: str
    end_time: str

    @classmethod
    def of(cls, w: business.WeeklyInterval) -> WeeklyInterval:
        return cls(weekday=w.weekday, start_time=w.start_time, end_time=w.end_time)


@strawberry.input
class WeeklyIntervalInput:
    weekday: int
    start_time: str
    end_time: str

    def proto(self) -> business.WeeklyInterval:
        return business.WeeklyInterval(
            weekday=self.weekday, start_time=self.start_time, end_time=self.end_time
        )


@strawberry.type
class WorkingHours:
    staff_id: strawberry.ID
    hours: list[WeeklyInterval]
    breaks: list[WeeklyInterval]


@strawberry.type
class DateOverride:
    id: strawberry.ID
    staff_id: strawberry.ID | None
    kind: DateOverrideKind
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    reason: str

    @classmethod
    def of(cls, d: business.DateOverride | None) -> DateOverride:
        assert d is not None
        return cls(
            id=strawberry.ID(d.override_id),
            staff_id=strawberry.ID(d.staff_id) if d.staff_id else None,
            kind=KIND_FROM_PROTO[d.kind],
            start_time=d.start_time,
            end_time=d.end_time,
            reason=d.reason,
        )


@strawberry.type
class Service:
    id: strawberry.ID
    name: str
    duration_minutes: int
    price_minor: int
    currency: str
    buffer_before_minutes: int
    buffer_after_minutes: int
    staff_ids: list[strawberry.ID]
    active: bool
    # 0 when the service needs no deposit; in the service's currency.
    deposit_minor: int
    free_cancellation_hours: int

    @classmethod
    def of(cls, s: business.Service | None) -> Service:
        assert s is not None
        return cls(
            id=strawberry.ID(s.service_id),
            name=s.name,
            duration_minutes=s.duration_minutes,
            price_minor=s.price.amount_minor if s.price else 0,
            currency=s.price.currency if s.price else "",
            buffer_before_minutes=s.buffer_before_minutes,
            buffer_after_minutes=s.buffer_after_minutes,
            staff_ids=[strawberry.ID(i) for i in s.staff_ids],
            active=s.active,
            deposit_minor=s.deposit.amount_minor if s.deposit else 0,
            free_cancellation_hours=s.free_cancellation_hours,
        )


@strawberry.type
class TemplateChoice:
    purpose: str
    template: str


@strawberry.input
class TemplateChoiceInput:
    purpose: str
    template: str


@strawberry.type
class ReminderPolicy:
    offsets_minutes: list[int]
    channels: list[Channel]
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    templates: list[TemplateChoice]

    @classmethod
    def of(cls, p: business.ReminderPolicy | None) -> ReminderPolicy:
        assert p is not None
        return cls(
            offsets_minutes=list(p.offsets_minutes),
            channels=[CHANNEL_FROM_PROTO[c] for c in p.channels if c in CHANNEL_FROM_PROTO],
            quiet_hours_start=p.quiet_hours_start or None,
            quiet_hours_end=p.quiet_hours_end or None,
            templates=[TemplateChoice(purpose=k, template=v) for k, v in sorted(p.templates.items())],
        )


@strawberry.type
class StaffConnection:
    nodes: list[Staff]
    page_info: PageInfo


@strawberry.type
class ServiceConnection:
    nodes: list[Service]
    page_info: PageInfo


@strawberry.type
class MembershipConnection:
    nodes: list[Membership]
    page_info: PageInfo


@strawberry.type
class DateOverrideConnection:
    nodes: list[DateOverride]
    page_info: PageInfo
