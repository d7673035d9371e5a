"""What the business-service publishes (through the outbox) and consumes (the signup saga).

Every published event carries the whole current state of what changed, keyed by business_id, so a
consumer's read model (booking-service availability) is a plain upsert and per-tenant order is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.auth.v1 import BusinessDraft as BusinessDraftMessage
from apptremind_gen.apptremind.events.auth.v1 import UserCreated
from apptremind_gen.apptremind.events.business import v1 as ev
from apptremind_platform import outbox
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded, Event
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import MessageProcessor, PermanentError

from . import convert
from .domain import Business, BusinessDraft, DateOverride, ReminderPolicy, Schedule, Service, Staff

log = get_logger(__name__)

SOURCE = "business"
# The consumer name in the inbox; the Kafka consumer group is the service name, also "business".
CONSUMER = "business"

BUSINESS_CREATED = "business.created.v1"
BUSINESS_UPDATED = "business.updated.v1"
STAFF_CHANGED = "business.staff.changed.v1"
SCHEDULE_CHANGED = "business.schedule.changed.v1"
DATE_OVERRIDE_ADDED = "business.date_override.added.v1"
SERVICE_CHANGED = "business.service.changed.v1"
REMINDER_POLICY_CHANGED = "business.reminder_policy.changed.v1"
USER_CREATED = "auth.user.created.v1"


async def publish(conn: Conn, event: Event) -> None:
    """Write the event in the caller's transaction; the outbox relay publishes it after commit."""
    await outbox.add(conn, event, source=SOURCE)


def business_created(value: Business) -> Event:
    return Event(
        BUSINESS_CREATED,
        str(value.business_id),
        ev.BusinessCreated(
            business_id=str(value.business_id),
            name=value.name,
            slug=value.slug,
            time_zone=value.time_zone,
            locale=value.locale,
            currency=value.currency,
            owner_user_id=str(value.owner_user_id),
        ),
        subject=str(value.business_id),
    )


def business_updated(value: Business) -> Event:
    return Event(
        BUSINESS_UPDATED,
        str(value.business_id),
        ev.BusinessUpdated(business=convert.business(value)),
        subject=str(value.business_id),
    )


def staff_changed(value: Staff) -> Event:
    return Event(
        STAFF_CHANGED,
        str(value.business_id),
        ev.StaffChanged(staff=convert.staff(value)),
        subject=str(value.staff_id),
    )


def schedule_changed(value: Schedule) -> Event:
    return Event(
        SCHEDULE_CHANGED,
        str(value.business_id),
        ev.ScheduleChanged(
            business_id=str(value.business_id),
            staff_id=str(value.staff_id),
            hours=[convert.interval(i) for i in value.hours],
            breaks=[convert.interval(i) for i in value.breaks],
        ),
        subject=str(value.staff_id),
    )


def date_override_added(value: DateOverride) -> Event:
    return Event(
        DATE_OVERRIDE_ADDED,
        str(value.business_id),
        ev.DateOverrideAdded(date_override=convert.date_override(value)),
        subject=str(value.override_id),
    )


def service_changed(value: Service) -> Event:
    return Event(
        SERVICE_CHANGED,
        str(value.business_id),
        ev.ServiceChanged(service=convert.service(value)),
        subject=str(value.service_id),
    )


def reminder_policy_changed(value: ReminderPolicy) -> Event:
    return Event(
        REMINDER_POLICY_CHANGED,
        str(value.business_id),
        ev.ReminderPolicyChanged(policy=convert.reminder_policy(value)),
        subject=str(value.business_id),
    )


# --- consumed -------------------------------------------------------------------------------------------

CreateForSignup = Callable[[Conn, str, BusinessDraft], Awaitable[Business | None]]


def user_created_handler(create_for_signup: CreateForSignup) -> Callable[[Conn, Decoded], Awaitable[None]]:
    """The signup saga's business step: auth.user.created.v1 with a business draft -> a business.

    The use case is passed in (bootstrap wires it) so that this module, which service.py uses to publish,
    does not import service.py back.
    """

    async def handle(conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        assert isinstance(data, UserCreated)  # the envelope check guarantees the payload type
        if data.business is None or data.business == BusinessDraftMessage():
            # An invited staff member signing up: no business to create. An all-empty draft is read the
            # same way, since proto3 cannot tell "sent empty" from "meant none" once a producer sets it.
            return
        draft = BusinessDraft(
            name=data.business.name,
            slug=data.business.slug,
            time_zone=data.business.time_zone,
            locale=data.business.locale,
            currency=data.business.currency,
        )
        try:
            created = await create_for_signup(conn, data.user_id, draft)
        except InvalidArgument as exc:
            # Retrying cannot fix a bad draft: straight to the DLQ, where the reason is in the headers.
            raise PermanentError(f"{exc.reason}: {exc.message}") from exc
        if created is None:
            log.info("signup_business_exists", user_id=data.user_id)
        else:
            log.info("signup_business_created", user_id=data.user_id, business_id=str(created.business_id))

    return handle


def signup_processor(pool: AsyncConnectionPool, create_for_signup: CreateForSignup) -> MessageProcessor:
    return MessageProcessor(
        consumer=CONSUMER,
        source=SOURCE,
        pool=pool,
        handlers={USER_CREATED: user_created_handler(create_for_signup)},
    )
