"""Domain values <-> generated protobuf messages, shared by the gRPC servicer and the outbox events."""

from __future__ import annotations

from apptremind_gen.apptremind.business import v1 as pb
from apptremind_gen.apptremind.common.v1 import Channel as PbChannel
from apptremind_gen.apptremind.common.v1 import Money

from .domain import (
    Business,
    Channel,
    DateOverride,
    Interval,
    IntervalText,
    OverrideKind,
    ReminderPolicy,
    Service,
    Staff,
)
from .validation import format_time

_CHANNELS = {int(PbChannel.EMAIL): Channel.EMAIL, int(PbChannel.SMS): Channel.SMS}
_CHANNELS_TO_PB = {Channel.EMAIL: PbChannel.EMAIL, Channel.SMS: PbChannel.SMS}
_KINDS = {
    int(pb.DateOverrideKind.TIME_OFF): OverrideKind.TIME_OFF,
    int(pb.DateOverrideKind.HOLIDAY): OverrideKind.HOLIDAY,
    int(pb.DateOverrideKind.EXTRA_HOURS): OverrideKind.EXTRA_HOURS,
}
_KINDS_TO_PB = {kind: pb.DateOverrideKind(value) for value, kind in _KINDS.items()}


def business(value: Business, *, public: bool = False) -> pb.Business:
    # The public booking page has no use for who owns the business.
    return pb.Business(
        business_id=str(value.business_id),
        name=value.name,
        slug=value.slug,
        time_zone=value.time_zone,
        locale=value.locale,
        currency=value.currency,
        owner_user_id="" if public else str(value.owner_user_id),
    )


def staff(value: Staff) -> pb.Staff:
    return pb.Staff(
        staff_id=str(value.staff_id),
        business_id=str(value.business_id),
        name=value.name,
        email=value.email,
        user_id=str(value.user_id) if value.user_id else "",
        active=value.active,
    )


def interval(value: Interval) -> pb.WeeklyInterval:
    return pb.WeeklyInterval(
        weekday=value.weekday,
        start_time=format_time(value.start_minute),
        end_time=format_time(value.end_minute),
    )


def interval_text(value: pb.WeeklyInterval) -> IntervalText:
    return IntervalText(weekday=value.weekday, start_time=value.start_time, end_time=value.end_time)


def date_override(value: DateOverride) -> pb.DateOverride:
    return pb.DateOverride(
        override_id=str(value.override_id),
        business_id=str(value.business_id),
        staff_id=str(value.staff_id) if value.staff_id else "",
        kind=_KINDS_TO_PB[value.kind],
        start_time=value.start_time,
        end_time=value.end_time,
        reason=value.reason,
    )


def override_kind(value: object) -> OverrideKind | None:
    """The domain kind of a proto enum value; None for UNSPECIFIED or a value this build does not know."""
    return _KINDS.get(int(value)) if isinstance(value, int) else None


def service(value: Service) -> pb.Service:
    return pb.Service(
        service_id=str(value.service_id),
        business_id=str(value.business_id),
        name=value.name,
        duration_minutes=value.duration_minutes,
        price=Money(amount_minor=value.price_minor, currency=value.currency),
        buffer_before_minutes=value.buffer_before_minutes,
        buffer_after_minutes=value.buffer_after_minutes,
        staff_ids=[str(s) for s in value.staff_ids],
        active=value.active,
        deposit=Money(amount_minor=value.deposit_minor, currency=value.currency)
        if value.deposit_minor
        else None,
        free_cancellation_hours=value.free_cancellation_hours,
    )


def channel(value: object) -> Channel | None:
    return _CHANNELS.get(int(value)) if isinstance(value, int) else None


def reminder_policy(value: ReminderPolicy) -> pb.ReminderPolicy:
    return pb.ReminderPolicy(
        business_id=str(value.business_id),
        offsets_minutes=list(value.offsets_minutes),
        channels=[_CHANNELS_TO_PB[c] for c in value.channels],
        quiet_hours_start="" if value.quiet_hours_start is None else format_time(value.quiet_hours_start),
        quiet_hours_end="" if value.quiet_hours_end is None else format_time(value.quiet_hours_end),
        templates=dict(value.templates),
    )
