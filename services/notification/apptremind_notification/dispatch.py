"""The dispatch pipeline: one reminder or confirmation from "due" to "sent" (or skipped, or failed).

Per message: (a) claim the delivery row by its idempotency key (already sent, skipped or failed: nothing to
do), reading the opt-outs and the business's template in the same transaction; (b) reminders ask
booking-service whether they are still current, so a cancel or reschedule racing the due event wins;
(c) opt-outs; (d) too late (the appointment started) and, for late SMS, quiet hours; (e) an SMS holds
one credit of the plan's SMS quota at billing (sms_credits.py), and goes out as an e-mail instead when the
quota is spent; (f) render the business's template (if its plan still includes custom templates) or the
default, with invite.ics on e-mails; (g) send through the channel's provider; (h) record the outcome with
its event in one transaction (and commit the SMS credit; a failed send releases it).

Sending cannot share a transaction with anything, so the claim commits the row as 'sending' first and
'sent' is committed after the provider accepted. A crash in between leaves 'sending', and the redelivered
message sends again: one duplicate per such crash, never a lost message; SMTP has no idempotency key a
server would honour, so nothing better is possible (see the README).
A retryable provider failure puts the row back to 'queued' and raises, so the MessageProcessor retries
with backoff and finally dead-letters; a replayed DLQ message starts again at (a).

The two transactions of a message, (a) and (h), go through a `GroupCommit` (in the streams worker the same
one as the MessageProcessor's inbox claims): the messages of a batch in flight share their commits instead
of paying one each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.notification import v1 as notification_events
from apptremind_platform import outbox
from apptremind_platform.clock import Clock
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Event
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import Retryable, RetryPolicy, Transactor

from . import compose, entitlements, repository
from .booking_client import Booking, BookingRefused, BookingUnavailable
from .channels.base import OutgoingMessage, Provider, ProviderError
from .channels.rendering import Rendered, TemplateError
from .group_commit import GroupCommit
from .metrics import DELIVERIES, PROVIDER_SECONDS
from .sms_credits import BillingUnavailable, SmsCredits, Unmetered

log = get_logger(__name__)

SENT_TOPIC = "notification.sent.v1"
FAILED_TOPIC = "notification.failed.v1"
SOURCE = "notification"

CHANNEL_TO_PB = {"email": Channel.EMAIL, "sms": Channel.SMS}
CHANNEL_FROM_PB = {int(v): k for k, v in CHANNEL_TO_PB.items()}

# booking's answers that mean "this appointment is not what the reminder was for any more".
_CHANGED_CODES = frozenset({"NOT_FOUND", "FAILED_PRECONDITION"})


# The plan's SMS quota is spent (billing refused the credit).
SMS_QUOTA_EXCEEDED = "sms_quota_exceeded"


class RetryableSendError(Retryable):
    """The provider failed in a way a later attempt can fix; retried under that provider's policy."""


@dataclass(frozen=True, slots=True)
class Job:
    business_id: uuid.UUID
    appointment_id: uuid.UUID
    kind: Literal["reminder", "confirmation"]
    channel: Literal["email", "sms"]
    recipient: str
    idempotency_key: str
    data: Mapping[str, str]
    # When the reminder was meant to go out (reminders only).
    remind_at: dt.datetime | None = None
    # The reminder's key at booking when the delivery goes under another one (an SMS sent as an e-mail).
    booking_key: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    delivery_id: uuid.UUID
    reason: str = ""


def in_quiet_hours(now: dt.datetime, time_zone: str, start: str, end: str) -> bool:
    """Whether `now` falls in the daily wall-clock window [start, end) in `time_zone` ("HH:MM"; a window
    like 21:00-08:00 wraps midnight). No window (empty or malformed) is never quiet; an unknown zone is
    read as UTC rather than ignored, so a bad zone cannot switch quiet hours off."""
    if not start or not end:
        return False
    try:
        begin = dt.time.fromisoformat(start)
        finish = dt.time.fromisoformat(end)
    except ValueError:
        return False
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(time_zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        zone = dt.UTC
    local = now.astimezone(zone).time()
    if begin == finish:
        return False
    if begin < finish:
        return begin <= local < finish
    return local >= begin or local < finish


class Dispatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        providers: Mapping[str, Provider],
        booking: Booking,
        clock: Clock,
        late_after: dt.timedelta = dt.timedelta(minutes=5),
        provider_policies: Mapping[str, RetryPolicy] | None = None,
        transact: Transactor | None = None,
        sms_credits: SmsCredits | None = None,
    ) -> None:
        self._providers = providers
        # Without billing (tests, local runs that switch metering off) every SMS is covered.
        self._credits: SmsCredits = sms_credits or Unmetered()
        self._booking = booking
        self._clock = clock
        self._late_after = late_after
        self._policies = dict(provider_policies or {})
        # Every transaction of the pipeline; shared with the MessageProcessors' inbox claims when given.
        self._transact: Transactor = transact or GroupCommit(pool)

    def provider(self, channel: str) -> Provider:
        return self._providers[channel]

    async def dispatch(self, job: Job) -> Outcome:
        provider = self._providers[job.channel]
        locale = job.data.get("locale") or compose.FALLBACK_LOCALE

        async def claim(conn: Conn) -> repository.DispatchClaim:
            return await repository.claim_delivery(
                conn,
                job.business_id,
                job.idempotency_key,
                job.appointment_id,
                job.kind,
                job.channel,
                job.recipient,
                job.data.get("manage_token", ""),
                provider.name,
                compose.locales_for(locale),
                entitlements.CUSTOM_TEMPLATES,
            )

        claimed = await self._transact(claim, key=str(job.business_id))
        row = claimed.row
        if row.terminal:
            DELIVERIES.labels(job.kind, job.channel, "duplicate").inc()
            return Outcome(row.status, row.delivery_id, row.skip_reason)
        delivery_id = row.delivery_id

        start = compose.parse_time(job.data, "start_time")
        end = compose.parse_time(job.data, "end_time")
        if job.kind == "reminder":
            token = job.data.get("manage_token", "")
            if not token:
                return await self._fail(job, delivery_id, "", "the reminder carries no manage_token")
            try:
                status = await self._booking.reminder_status(token, job.booking_key or job.idempotency_key)
            except BookingUnavailable as err:
                # Nothing was sent: the row goes back to 'queued' while the message waits for its retry.
                await self._requeue(job, delivery_id, "", str(err), attempted=False)
                raise
            except BookingRefused as err:
                if err.code in _CHANGED_CODES:
                    return await self._skip(job, delivery_id, "appointment_changed")
                return await self._fail(job, delivery_id, "", f"booking refused the status check: {err}")
            if not status.current:
                return await self._skip(job, delivery_id, "appointment_changed")
            start, end = status.start_time or start, status.end_time or end
        if start is None:
            return await self._fail(job, delivery_id, "", "the message carries no start_time")
        end = end if end and end > start else start + dt.timedelta(minutes=30)

        now = self._clock.now()
        if now >= start:
            return await self._skip(job, delivery_id, "too_late")
        late = job.remind_at is not None and now - job.remind_at > self._late_after
        if (
            job.channel == "sms"
            and late
            and in_quiet_hours(
                now,
                job.data.get("business_time_zone") or "UTC",
                job.data.get("quiet_hours_start", ""),
                job.data.get("quiet_hours_end", ""),
            )
        ):
            return await self._skip(job, delivery_id, "quiet_hours")
        if claimed.opted_out:
            return await self._skip(job, delivery_id, "opted_out")
        credit: uuid.UUID | None = None
        if job.channel == "sms":
            credit = uuid.uuid4()
            try:
                covered = await self._credits.reserve(job.business_id, credit)
            except BillingUnavailable as err:
                await self._requeue(job, delivery_id, "", str(err), attempted=False)
                raise
            if not covered:
                return await self._sms_quota_spent(job, delivery_id)

        try:
            # A business whose plan no longer includes custom templates gets the default wording.
            own = claimed.template if entitlements.allows(claimed.template_limit) else None
            rendered = self._render(job, start, end, locale, own)
        except TemplateError as err:
            return await self._fail(job, delivery_id, "", f"template_invalid: {err}")
        attachments = (
            (compose.invite(str(job.appointment_id), start, end, job.data, attendee=job.recipient, now=now),)
            if job.channel == "email"
            else ()
        )
        message = OutgoingMessage(
            channel=job.channel,
            recipient=job.recipient,
            text=rendered.text,
            reference=str(delivery_id),
            subject=rendered.subject if job.channel == "email" else "",
            html=rendered.html if job.channel == "email" else None,
            attachments=attachments,
        )
        try:
            with PROVIDER_SECONDS.labels(job.channel).time():
                result = await provider.send(message)
        except ProviderError as err:
            if credit is not None:
                await self._credits.release(job.business_id, credit)
            if not err.retryable:
                return await self._fail(job, delivery_id, err.provider, err.reason, attempted=True)
            await self._requeue(job, delivery_id, err.provider, err.reason, attempted=True)
            DELIVERIES.labels(job.kind, job.channel, "retry").inc()
            raise RetryableSendError(str(err), self._policies.get(err.provider)) from err
        sent_at = self._clock.now()
        if credit is not None:
            await self._credits.commit(job.business_id, credit)

        async def record_sent(conn: Conn) -> None:
            await repository.mark_sent(
                conn, job.business_id, delivery_id, result.provider, result.provider_message_id, sent_at
            )
            await outbox.add(
                conn,
                Event(
                    SENT_TOPIC,
                    str(job.business_id),
                    notification_events.NotificationSent(
                        business_id=str(job.business_id),
                        delivery_id=str(delivery_id),
                        appointment_id=str(job.appointment_id),
                        channel=CHANNEL_TO_PB[job.channel],
                        provider=result.provider,
                        sent_at=sent_at,
                    ),
                    subject=str(delivery_id),
                ),
                SOURCE,
            )

        await self._transact(record_sent, key=str(job.business_id))
        DELIVERIES.labels(job.kind, job.channel, "sent").inc()
        log.info("delivery_sent", delivery_id=str(delivery_id), provider=result.provider, kind=job.kind)
        return Outcome("sent", delivery_id)

    async def _sms_quota_spent(self, job: Job, delivery_id: uuid.UUID) -> Outcome:
        """The plan's SMS quota is spent: the customer gets the reminder by e-mail instead, unless an e-mail
        reminder goes out anyway (the policy has both channels) or there is no address. The e-mail is sent
        first, under its own delivery key, so a failure retries this message and the SMS row stays open."""
        channels = job.data.get("reminder_channels", "").split(",")
        email = job.data.get("customer_email", "")
        if "email" not in channels and email:
            fallback = dataclasses.replace(
                job,
                channel="email",
                recipient=email,
                idempotency_key=f"{job.idempotency_key}|sms-quota",
                booking_key=job.booking_key or job.idempotency_key,
            )
            try:
                await self.dispatch(fallback)
            except Retryable:
                await self._requeue(
                    job, delivery_id, "", "the e-mail instead of the SMS failed", attempted=False
                )
                raise
        return await self._skip(job, delivery_id, SMS_QUOTA_EXCEEDED)

    def _render(
        self, job: Job, start: dt.datetime, end: dt.datetime, locale: str, own: tuple[str, str] | None
    ) -> Rendered:
        html = job.channel == "email"
        if own is not None:
            try:
                return compose.render_with(own[0], own[1], job.data, start, end, html=html)
            except TemplateError as err:
                # Saved templates were checked when saved, but the data may lack what one uses: the
                # customer still gets the default wording rather than nothing.
                log.warning("business_template_failed", error=str(err), kind=job.kind, channel=job.channel)
        subject, body = compose.default_template(job.kind, job.channel, locale)
        return compose.render_with(subject, body, job.data, start, end, html=html)

    async def _requeue(
        self, job: Job, delivery_id: uuid.UUID, provider: str, error: str, *, attempted: bool
    ) -> None:
        async def record(conn: Conn) -> None:
            await repository.mark_retry(conn, job.business_id, delivery_id, provider, error, attempted)

        await self._transact(record, key=str(job.business_id))

    async def _skip(self, job: Job, delivery_id: uuid.UUID, reason: str) -> Outcome:
        async def record(conn: Conn) -> None:
            await repository.mark_skipped(conn, job.business_id, delivery_id, reason)
            await repository.count(conn, job.business_id, self._clock.now().date(), job.channel, "skipped")

        await self._transact(record, key=str(job.business_id))
        DELIVERIES.labels(job.kind, job.channel, "skipped").inc()
        log.info("delivery_skipped", delivery_id=str(delivery_id), reason=reason, kind=job.kind)
        return Outcome("skipped", delivery_id, reason)

    async def _fail(
        self, job: Job, delivery_id: uuid.UUID, provider: str, reason: str, attempted: bool = False
    ) -> Outcome:
        async def record(conn: Conn) -> None:
            await repository.mark_failed(conn, job.business_id, delivery_id, provider, reason, attempted)
            await outbox.add(
                conn,
                Event(
                    FAILED_TOPIC,
                    str(job.business_id),
                    notification_events.NotificationFailed(
                        business_id=str(job.business_id),
                        delivery_id=str(delivery_id),
                        appointment_id=str(job.appointment_id),
                        channel=CHANNEL_TO_PB[job.channel],
                        reason=reason[:1000],
                    ),
                    subject=str(delivery_id),
                ),
                SOURCE,
            )

        await self._transact(record, key=str(job.business_id))
        DELIVERIES.labels(job.kind, job.channel, "failed").inc()
        log.warning("delivery_failed", delivery_id=str(delivery_id), reason=reason, kind=job.kind)
        return Outcome("failed", delivery_id, reason)
