"""The topic registry: every Kafka topic, its payload type and schema major version, declared in code.

Topics are never auto-created: `ensure_topics` creates each declared topic and its `.dlq` twin. Messages
are keyed by business_id, so a tenant's events keep their order on one partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import betterproto2
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from apptremind_gen.apptremind.events.auth import v1 as auth_events
from apptremind_gen.apptremind.events.billing import v1 as billing_events
from apptremind_gen.apptremind.events.booking import v1 as booking_events
from apptremind_gen.apptremind.events.business import v1 as business_events
from apptremind_gen.apptremind.events.notification import v1 as notification_events
from apptremind_gen.apptremind.events.scheduler import v1 as scheduler_events

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    payload: type[betterproto2.Message]
    partitions: int = 6

    @property
    def version(self) -> int:
        # The major version is the topic name's last part: booking.appointment.booked.v1 -> 1.
        return int(self.name.rsplit(".v", 1)[1])

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("auth.user.created.v1", auth_events.UserCreated),
        TopicSpec("auth.membership.granted.v1", auth_events.MembershipGranted),
        TopicSpec("auth.membership.revoked.v1", auth_events.MembershipRevoked),
        TopicSpec("business.created.v1", business_events.BusinessCreated),
        TopicSpec("business.updated.v1", business_events.BusinessUpdated),
        TopicSpec("business.staff.changed.v1", business_events.StaffChanged),
        TopicSpec("business.schedule.changed.v1", business_events.ScheduleChanged),
        TopicSpec("business.date_override.added.v1", business_events.DateOverrideAdded),
        TopicSpec("business.service.changed.v1", business_events.ServiceChanged),
        TopicSpec("business.reminder_policy.changed.v1", business_events.ReminderPolicyChanged),
        TopicSpec("booking.appointment.booked.v1", booking_events.AppointmentBooked),
        TopicSpec("booking.appointment.rescheduled.v1", booking_events.AppointmentRescheduled),
        TopicSpec("booking.appointment.cancelled.v1", booking_events.AppointmentCancelled),
        TopicSpec("booking.appointment.completed.v1", booking_events.AppointmentCompleted),
        TopicSpec("booking.appointment.no_show.v1", booking_events.AppointmentNoShow),
        TopicSpec("booking.reminder.requested.v1", booking_events.ReminderRequested),
        TopicSpec("booking.reminder.cancelled.v1", booking_events.ReminderCancelled),
        TopicSpec("booking.deposit.settlement_requested.v1", booking_events.DepositSettlementRequested),
        TopicSpec("billing.subscription.activated.v1", billing_events.SubscriptionActivated),
        TopicSpec("billing.subscription.updated.v1", billing_events.SubscriptionUpdated),
        TopicSpec("billing.subscription.cancelled.v1", billing_events.SubscriptionCancelled),
        TopicSpec("billing.entitlements.changed.v1", billing_events.EntitlementsChanged),
        TopicSpec("billing.deposit.authorized.v1", billing_events.DepositAuthorized),
        TopicSpec("billing.deposit.failed.v1", billing_events.DepositFailed),
        TopicSpec("billing.deposit.captured.v1", billing_events.DepositSettled),
        TopicSpec("billing.deposit.released.v1", billing_events.DepositSettled),
        TopicSpec("scheduler.reminder.due.v1", scheduler_events.JobDue),
        TopicSpec("notification.sent.v1", notification_events.NotificationSent),
        TopicSpec("notification.failed.v1", notification_events.NotificationFailed),
    )
}


def spec_for(topic: str) -> TopicSpec:
    try:
        return TOPICS[topic]
    except KeyError:
        raise KeyError(f"topic {topic!r} is not declared in apptremind_platform.topics") from None


def ensure_topics(
    bootstrap_servers: str, specs: list[TopicSpec] | None = None, replication_factor: int = 1
) -> list[str]:
    """Create missing topics and their DLQ twins; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted: list[NewTopic] = []
    for spec in specs if specs is not None else list(TOPICS.values()):
        for name in (spec.name, spec.dlq):
            if name not in existing:
                wanted.append(NewTopic(name, spec.partitions, replication_factor))
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=15).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            # Another process creating the same topic at the same time is fine.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
