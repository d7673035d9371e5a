"""notification-service's read model of billing's entitlements, fed over real Kafka
(billing.entitlements.changed.v1: newest envelope time wins, redeliveries and malformed events change
nothing), and the plan check on writing templates (free may read and preview, not write)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.notification import v1 as pb
from apptremind_notification import entitlements
from apptremind_platform.db import unit_of_work
from tests.fixtures.kafka_io import publish
from tests.integration.notification.conftest import Notification
from tests.integration.notification.support import (
    PLAN_LIMITS,
    entitlements_changed,
    eventually,
)

T0 = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
TOPIC = entitlements.CHANGED_TOPIC
Metadata = list[tuple[str, str]]


async def bootstrap(h: Notification) -> str:
    """The broker's address, once the service's consumer holds its partitions."""
    await h.runtime.consumers_assigned()
    return h.runtime.settings.kafka.bootstrap_servers


def tenant(h: Notification) -> tuple[str, Metadata]:
    business_id = str(uuid.uuid4())
    return business_id, h.metadata(str(uuid.uuid4()), {business_id: "owner"})


def stored(h: Notification, business_id: str) -> tuple[Any, ...] | None:
    rows = h.db.execute(
        "SELECT plan, limits, changed_at FROM business_entitlement WHERE business_id = %s", (business_id,)
    )
    return rows[0] if rows else None


def handled(h: Notification, event_id: uuid.UUID) -> bool:
    """The consumer has processed the message (its inbox claim commits with the upsert)."""
    rows = h.db.execute(
        "SELECT 1 FROM inbox WHERE consumer = %s AND message_id = %s", (entitlements.CONSUMER, str(event_id))
    )
    return bool(rows)


def duplicates() -> float:
    value = REGISTRY.get_sample_value(
        "consumer_duplicates_total", {"consumer": entitlements.CONSUMER, "topic": TOPIC}
    )
    return value or 0.0


def templates(h: Notification, business_id: str) -> list[tuple[Any, ...]]:
    return h.db.execute(
        "SELECT channel, subject, body FROM template WHERE business_id = %s ORDER BY channel", (business_id,)
    )


async def expect_plan_required(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "plan_required",
    ), info.value.details()
    assert "custom_templates" in (info.value.details() or "")


def create(h: Notification, business_id: str, md: Metadata, channel: Channel = Channel.EMAIL) -> Any:
    email = channel == Channel.EMAIL
    return h.client.call(
        "CreateTemplate",
        pb.CreateTemplateRequest(
            business_id=business_id,
            kind=pb.TemplateKind.REMINDER,
            channel=channel,
            locale="de",
            subject="Termin bei {{ business_name }}" if email else "",
            body="Hallo {{ customer_name }}, bis {{ when }}.",
        ),
        pb.CreateTemplateResponse,
        metadata=md,
    )


def update(h: Notification, business_id: str, md: Metadata, template_id: str, body: str) -> Any:
    return h.client.call(
        "UpdateTemplate",
        pb.UpdateTemplateRequest(business_id=business_id, template_id=template_id, subject="Neu", body=body),
        pb.UpdateTemplateResponse,
        metadata=md,
    )


async def test_the_consumer_keeps_the_newest_entitlements_and_ignores_older_events(
    harness: Notification,
) -> None:
    kafka = await bootstrap(harness)
    business_id = str(uuid.uuid4())

    publish(
        kafka, entitlements_changed(business_id, "pro"), source="billing", when=T0 + dt.timedelta(hours=2)
    )
    await eventually(lambda: stored(harness, business_id) is not None, what="the pro row")
    assert stored(harness, business_id) == ("pro", PLAN_LIMITS["pro"], T0 + dt.timedelta(hours=2))

    # Delivered after the pro event but older than it (billing changed the plan before): changes nothing.
    older = entitlements_changed(business_id, "free")
    publish(kafka, older, source="billing", when=T0 + dt.timedelta(hours=1))
    await eventually(lambda: handled(harness, older.id), what="the older event handled")
    assert stored(harness, business_id) == ("pro", PLAN_LIMITS["pro"], T0 + dt.timedelta(hours=2))

    newer = entitlements_changed(business_id, "business")
    publish(kafka, newer, source="billing", when=T0 + dt.timedelta(hours=3))
    await eventually(lambda: handled(harness, newer.id), what="the newer event handled")
    assert stored(harness, business_id) == ("business", PLAN_LIMITS["business"], T0 + dt.timedelta(hours=3))


async def test_a_redelivered_event_changes_nothing(harness: Notification) -> None:
    kafka = await bootstrap(harness)
    business_id = str(uuid.uuid4())
    event = entitlements_changed(business_id, "pro")
    publish(kafka, event, source="billing", when=T0)
    await eventually(lambda: handled(harness, event.id), what="the event handled")
    assert stored(harness, business_id) == ("pro", PLAN_LIMITS["pro"], T0)

    # The same message again, as a relay retry or a DLQ replay delivers it; then the same message id
    # carrying a later time and another plan, which would apply if the inbox did not stop it.
    before = duplicates()
    publish(kafka, event, source="billing", when=T0)
    await eventually(lambda: duplicates() == before + 1, what="the redelivery seen as a duplicate")
    same_id = entitlements_changed(business_id, "free", event_id=event.id)
    publish(kafka, same_id, source="billing", when=T0 + dt.timedelta(days=1))
    await eventually(lambda: duplicates() == before + 2, what="the re-encoded redelivery seen as a duplicate")

    assert stored(harness, business_id) == ("pro", PLAN_LIMITS["pro"], T0)
    [(claims,)] = harness.db.execute(
        "SELECT count(*) FROM inbox WHERE consumer = %s AND message_id = %s",
        (entitlements.CONSUMER, str(event.id)),
    )
    assert claims == 1


async def test_an_event_with_a_malformed_business_id_goes_to_the_dlq(harness: Notification) -> None:
    kafka = await bootstrap(harness)
    bad = entitlements_changed("not-a-uuid", "pro")
    before = harness.db.execute("SELECT count(*) FROM business_entitlement")
    publish(kafka, bad, source="billing", when=T0)

    def dead_letters() -> list[tuple[Any, ...]]:
        return harness.db.execute(
            "SELECT headers FROM outbox WHERE topic = %s AND key = %s", (TOPIC + ".dlq", "not-a-uuid")
        )

    await eventually(lambda: bool(dead_letters()), what="the dead letter")
    [(headers,)] = dead_letters()
    assert headers["dlq-consumer"] == entitlements.CONSUMER
    assert headers["dlq-error-type"] == "PermanentError"
    # Straight to the DLQ: a malformed id is never retried.
    assert headers["dlq-attempts"] == "1"
    assert harness.db.execute("SELECT count(*) FROM business_entitlement") == before
    assert not handled(harness, bad.id)


async def test_a_free_business_reads_but_cannot_write_templates_until_it_upgrades(
    harness: Notification,
) -> None:
    kafka = await bootstrap(harness)
    business_id, owner = tenant(harness)

    # No event yet: free. Refused before anything is written; reading and previewing stay allowed.
    await expect_plan_required(create(harness, business_id, owner))
    assert templates(harness, business_id) == []
    listed = await harness.client.call(
        "ListTemplates",
        pb.ListTemplatesRequest(business_id=business_id),
        pb.ListTemplatesResponse,
        metadata=owner,
    )
    assert listed.templates == []
    preview = await harness.client.call(
        "PreviewTemplate",
        pb.PreviewTemplateRequest(
            business_id=business_id,
            kind=pb.TemplateKind.REMINDER,
            channel=Channel.SMS,
            body="Bis {{ time }}",
        ),
        pb.PreviewTemplateResponse,
        metadata=owner,
    )
    assert preview.text.startswith("Bis ")

    upgrade = entitlements_changed(business_id, "pro")
    publish(kafka, upgrade, source="billing", when=T0)
    await eventually(lambda: handled(harness, upgrade.id), what="the upgrade handled")
    created = (await create(harness, business_id, owner)).template
    assert created is not None
    assert len(templates(harness, business_id)) == 1

    downgrade = entitlements_changed(business_id, "free")
    publish(kafka, downgrade, source="billing", when=T0 + dt.timedelta(days=30))
    await eventually(lambda: handled(harness, downgrade.id), what="the downgrade handled")
    await expect_plan_required(
        update(harness, business_id, owner, created.template_id, "Geändert {{ when }}")
    )
    await expect_plan_required(create(harness, business_id, owner, Channel.SMS))
    assert templates(harness, business_id) == [
        ("email", "Termin bei {{ business_name }}", "Hallo {{ customer_name }}, bis {{ when }}.")
    ]
    # A downgraded business still sees and previews the templates it wrote.
    listed = await harness.client.call(
        "ListTemplates",
        pb.ListTemplatesRequest(business_id=business_id),
        pb.ListTemplatesResponse,
        metadata=owner,
    )
    assert [t.template_id for t in listed.templates] == [created.template_id]
    preview = await harness.client.call(
        "PreviewTemplate",
        pb.PreviewTemplateRequest(business_id=business_id, template_id=created.template_id),
        pb.PreviewTemplateResponse,
        metadata=owner,
    )
    assert preview.subject == "Termin bei Hair by Ana"


async def test_custom_templates_allowed_follows_the_limit(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    business_id = uuid.uuid4()
    async with unit_of_work(harness.runtime.pool) as conn:
        assert not await entitlements.custom_templates_allowed(conn, business_id)  # no row: free
        assert await entitlements.upsert(conn, business_id, "business", {"custom_templates": -1}, T0)
        assert await entitlements.custom_templates_allowed(conn, business_id)  # -1: unlimited
        # Older than the row: refused and nothing changes.
        assert not await entitlements.upsert(
            conn, business_id, "free", {"custom_templates": 0}, T0 - dt.timedelta(1)
        )
        assert await entitlements.custom_templates_allowed(conn, business_id)
        # A plan that does not list the feature does not include it.
        assert await entitlements.upsert(conn, business_id, "legacy", {}, T0 + dt.timedelta(1))
        assert not await entitlements.custom_templates_allowed(conn, business_id)
