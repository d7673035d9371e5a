"""The read model of billing's entitlements (`business_entitlement`), kept from billing.entitlements.changed.v1,
and the questions notification asks of it (may this business use its own templates?).

billing publishes the full entitlement set whenever the plan in force changes, so each event replaces the
row; the envelope's time orders them, and an event older than the row changes nothing. A business without a
row has had no event yet: it is on the free plan.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.events.billing import v1 as billing_events
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded
from apptremind_platform.processing import MessageProcessor, PermanentError

CHANGED_TOPIC = "billing.entitlements.changed.v1"
# The inbox's consumer name; the Kafka consumer group is the service's ("notification").
CONSUMER = "notification-entitlements"
SOURCE = "notification"

CUSTOM_TEMPLATES = "custom_templates"

# Equal times apply: Kafka keeps one business's events in publication order, so the later one wins.
_UPSERT = """
INSERT INTO business_entitlement AS e (business_id, plan, limits, changed_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT (business_id) DO UPDATE
    SET plan = excluded.plan, limits = excluded.limits, changed_at = excluded.changed_at
    WHERE e.changed_at <= excluded.changed_at
"""
_LIMIT = "SELECT (limits ->> %s)::bigint FROM business_entitlement WHERE business_id = %s"


async def upsert(
    conn: Conn,
    business_id: uuid.UUID,
    plan: str,
    limits: Mapping[str, int],
    changed_at: dt.datetime,
) -> bool:
    """Record the entitlements in force since `changed_at`; False (nothing changed) when the stored row is
    newer."""
    cur = await conn.execute(_UPSERT, (business_id, plan, Jsonb(dict(limits)), changed_at))
    return cur.rowcount == 1


async def limit(conn: Conn, business_id: uuid.UUID, feature: str) -> int:
    """The business's limit for `feature` (-1 unlimited); 0 without a row (free) or without the feature."""
    cur = await conn.execute(_LIMIT, (feature, business_id))
    row = await cur.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def custom_templates_allowed(conn: Conn, business_id: uuid.UUID) -> bool:
    """Whether the business's plan lets it write templates of its own (pro and business; not free)."""
    return allows(await limit(conn, business_id, CUSTOM_TEMPLATES))


def allows(feature_limit: int | None) -> bool:
    """Whether a limit as stored (None: no row, the free plan) lets the business use the feature at all."""
    return bool(feature_limit)


async def _changed(conn: Conn, decoded: Decoded) -> None:
    data = decoded.data
    assert isinstance(data, billing_events.EntitlementsChanged)
    try:
        business_id = uuid.UUID(data.business_id)
    except ValueError:
        # Retrying cannot fix a malformed id: straight to the DLQ.
        raise PermanentError(f"business_id {data.business_id!r} is not a UUID") from None
    if not data.plan:
        raise PermanentError("billing.entitlements.changed.v1 without a plan")
    changed_at = decoded.envelope.time
    if changed_at is None:
        # Without a time the event cannot be ordered against the ones already applied.
        raise PermanentError("billing.entitlements.changed.v1 without an envelope time")
    await upsert(conn, business_id, data.plan, data.limits, changed_at)


def processor(pool: AsyncConnectionPool) -> MessageProcessor:
    """The consumer of billing's entitlement changes; the inbox makes a redelivery a no-op."""
    return MessageProcessor(CONSUMER, SOURCE, pool, {CHANGED_TOPIC: _changed})
