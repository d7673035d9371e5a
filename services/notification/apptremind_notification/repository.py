"""All of the notification-service's SQL: templates, deliveries, opt-outs and the daily counters.

Every business query is scoped by business_id, the leading column of every key, so one tenant's ids never
reach another's rows. The only lookups without a business are the ones a provider webhook makes (by our
delivery id, by the provider's message id, by the phone number that replied), which carry no tenant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg.rows import class_row

from apptremind_platform.db import Conn
from apptremind_platform.ids import new_id

TERMINAL = ("sent", "delivered", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class TemplateRow:
    business_id: uuid.UUID
    template_id: uuid.UUID
    kind: str
    channel: str
    locale: str
    subject: str
    body: str
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    business_id: uuid.UUID
    delivery_id: uuid.UUID
    idempotency_key: str
    appointment_id: uuid.UUID
    kind: str
    channel: str
    recipient: str
    status: str
    skip_reason: str
    provider: str
    provider_message_id: str
    attempts: int
    last_error: str
    manage_token: str
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class OptOutRow:
    business_id: uuid.UUID
    channel: str
    address: str
    reason: str
    created_at: dt.datetime


_TEMPLATE_COLS = "business_id, template_id, kind, channel, locale, subject, body, updated_at"
_DELIVERY_COLS = (
    "business_id, delivery_id, idempotency_key, appointment_id, kind, channel, recipient, status, "
    "skip_reason, provider, provider_message_id, attempts, last_error, manage_token, created_at, "
    "updated_at, sent_at"
)
_OPT_OUT_COLS = "business_id, channel, address, reason, created_at"


# --- templates ---------------------------------------------------------------------------------------


async def insert_template(
    conn: Conn, business_id: uuid.UUID, kind: str, channel: str, locale: str, subject: str, body: str
) -> TemplateRow | None:
    """The new template, or None when the business already has one for (kind, channel, locale)."""
    async with conn.cursor(row_factory=class_row(TemplateRow)) as cur:
        await cur.execute(
            f"""INSERT INTO template (business_id, template_id, kind, channel, locale, subject, body)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (business_id, kind, channel, locale) DO NOTHING
                RETURNING {_TEMPLATE_COLS}""",
            (business_id, new_id(), kind, channel, locale, subject, body),
        )
        return await cur.fetchone()


async def update_template(
    conn: Conn, business_id: uuid.UUID, template_id: uuid.UUID, subject: str, body: str
) -> TemplateRow | None:
    async with conn.cursor(row_factory=class_row(TemplateRow)) as cur:
        await cur.execute(
            f"""UPDATE template SET subject = %s, body = %s, updated_at = now()
                WHERE business_id = %s AND template_id = %s
                RETURNING {_TEMPLATE_COLS}""",
            (subject, body, business_id, template_id),
        )
        return await cur.fetchone()


async def get_template(conn: Conn, business_id: uuid.UUID, template_id: uuid.UUID) -> TemplateRow | None:
    async with conn.cursor(row_factory=class_row(TemplateRow)) as cur:
        await cur.execute(
            f"SELECT {_TEMPLATE_COLS} FROM template WHERE business_id = %s AND template_id = %s",
            (business_id, template_id),
        )
        return await cur.fetchone()


async def list_templates(conn: Conn, business_id: uuid.UUID) -> list[TemplateRow]:
    async with conn.cursor(row_factory=class_row(TemplateRow)) as cur:
        await cur.execute(
            f"""SELECT {_TEMPLATE_COLS} FROM template WHERE business_id = %s
                ORDER BY kind, channel, locale""",
            (business_id,),
        )
        return await cur.fetchall()


# --- deliveries --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchClaim:
    """A claimed delivery and what dispatching it needs from the database besides."""

    row: DeliveryRow
    opted_out: bool = False
    # The business's template (subject, body) for the first locale it has one for, if any.
    template: tuple[str, str] | None = None
    # The business's limit for `template_feature` (its plan's custom templates); None: no row (free).
    template_limit: int | None = None


async def claim_delivery(
    conn: Conn,
    business_id: uuid.UUID,
    idempotency_key: str,
    appointment_id: uuid.UUID,
    kind: str,
    channel: str,
    recipient: str,
    manage_token: str,
    provider: str,
    locales: list[str],
    template_feature: str,
) -> DispatchClaim:
    """The delivery for this idempotency key, created the first time, and moved to 'sending' through
    `provider` unless it is already terminal (then it is returned untouched, and nothing else is read).
    One statement: the upsert both creates and claims, and locks the row until the transaction ends; the
    same statement reads the recipient's opt-out, the business's template and its plan's limit for
    templates of its own, since a claimed delivery always needs them."""
    params = {
        "business_id": business_id,
        "delivery_id": new_id(),
        "key": idempotency_key,
        "appointment_id": appointment_id,
        "kind": kind,
        "channel": channel,
        "recipient": recipient,
        "provider": provider,
        "token": manage_token,
        "locales": locales,
        "feature": template_feature,
    }
    async with conn.cursor() as cur:
        await cur.execute(
            f"""WITH claimed AS (
                    INSERT INTO delivery (business_id, delivery_id, idempotency_key, appointment_id, kind,
                                          channel, recipient, status, provider, manage_token)
                    VALUES (%(business_id)s, %(delivery_id)s, %(key)s, %(appointment_id)s, %(kind)s,
                            %(channel)s, %(recipient)s, 'sending', %(provider)s, %(token)s)
                    ON CONFLICT (business_id, idempotency_key) DO UPDATE
                    SET status = 'sending', provider = EXCLUDED.provider, updated_at = now()
                    WHERE delivery.status NOT IN ('sent', 'delivered', 'failed', 'skipped')
                    RETURNING {_DELIVERY_COLS})
                SELECT claimed.*,
                       EXISTS (SELECT 1 FROM opt_out o WHERE o.business_id = %(business_id)s
                               AND o.channel = %(channel)s AND o.address = %(recipient)s)
                       OR (%(channel)s = 'sms' AND EXISTS (SELECT 1 FROM sms_stop WHERE address = %(recipient)s)),
                       t.subject, t.body,
                       CASE WHEN t.subject IS NOT NULL THEN
                           (SELECT (e.limits ->> %(feature)s)::bigint FROM business_entitlement e
                            WHERE e.business_id = %(business_id)s)
                       END
                FROM claimed LEFT JOIN LATERAL (
                    SELECT subject, body FROM template
                    WHERE business_id = %(business_id)s AND kind = %(kind)s AND channel = %(channel)s
                      AND locale = ANY(%(locales)s)
                    ORDER BY array_position(%(locales)s, locale) LIMIT 1) t ON true""",
            params,
        )
        found = await cur.fetchone()
        if found is not None:
            width = len(dataclasses.fields(DeliveryRow))
            opted_out, subject, body, template_limit = found[width:]
            return DispatchClaim(
                DeliveryRow(*found[:width]),
                bool(opted_out),
                (subject, body) if subject is not None else None,
                template_limit,
            )
    # Already terminal: the upsert's WHERE left it alone and returned nothing.
    async with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        await cur.execute(
            f"SELECT {_DELIVERY_COLS} FROM delivery WHERE business_id = %s AND idempotency_key = %s",
            (business_id, idempotency_key),
        )
        row = await cur.fetchone()
    assert row is not None
    return DispatchClaim(row)


async def mark_sent(
    conn: Conn,
    business_id: uuid.UUID,
    delivery_id: uuid.UUID,
    provider: str,
    provider_message_id: str,
    now: dt.datetime,
) -> None:
    """The provider accepted the message (one more attempt)."""
    await conn.execute(
        """UPDATE delivery SET status = CASE WHEN status IN ('delivered', 'failed') THEN status ELSE 'sent' END,
                              attempts = attempts + 1, provider = %s, provider_message_id = %s,
                              last_error = '', sent_at = %s, updated_at = now()
           WHERE business_id = %s AND delivery_id = %s""",
        (provider, provider_message_id, now, business_id, delivery_id),
    )


async def mark_retry(
    conn: Conn,
    business_id: uuid.UUID,
    delivery_id: uuid.UUID,
    provider: str,
    error: str,
    attempted: bool = True,
) -> None:
    """Back to 'queued' after a retryable failure (`attempted`: of the provider, one more attempt); the
    next try takes it from there."""
    await conn.execute(
        """UPDATE delivery SET status = 'queued', attempts = attempts + %s,
                              provider = CASE WHEN %s = '' THEN provider ELSE %s END,
                              last_error = %s, updated_at = now()
           WHERE business_id = %s AND delivery_id = %s""",
        (int(attempted), provider, provider, error[:1000], business_id, delivery_id),
    )


async def mark_failed(
    conn: Conn,
    business_id: uuid.UUID,
    delivery_id: uuid.UUID,
    provider: str,
    error: str,
    attempted: bool = False,
) -> None:
    """For good; `attempted` when a provider was called (and refused)."""
    await conn.execute(
        """UPDATE delivery SET status = 'failed', attempts = attempts + %s, provider = %s, last_error = %s,
                              updated_at = now()
           WHERE business_id = %s AND delivery_id = %s""",
        (int(attempted), provider, error[:1000], business_id, delivery_id),
    )


async def mark_skipped(conn: Conn, business_id: uuid.UUID, delivery_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        """UPDATE delivery SET status = 'skipped', skip_reason = %s, updated_at = now()
           WHERE business_id = %s AND delivery_id = %s""",
        (reason, business_id, delivery_id),
    )


async def list_deliveries(
    conn: Conn, business_id: uuid.UUID, appointment_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
) -> list[DeliveryRow]:
    async with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        await cur.execute(
            f"""SELECT {_DELIVERY_COLS} FROM delivery
                WHERE business_id = %s
                  AND (%s::uuid IS NULL OR appointment_id = %s)
                  AND (%s::uuid IS NULL OR delivery_id > %s)
                ORDER BY delivery_id LIMIT %s""",
            (business_id, appointment_id, appointment_id, after, after, limit),
        )
        return await cur.fetchall()


async def delivery_for_callback(
    conn: Conn, delivery_id: uuid.UUID | None, provider_message_id: str
) -> DeliveryRow | None:
    """The SMS delivery a provider callback is about: by our reference, else by the provider's id."""
    async with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        await cur.execute(
            f"""SELECT {_DELIVERY_COLS} FROM delivery
                WHERE channel = 'sms' AND (delivery_id = %s OR (%s <> '' AND provider_message_id = %s))
                ORDER BY delivery_id = %s DESC LIMIT 1 FOR UPDATE""",
            (delivery_id, provider_message_id, provider_message_id, delivery_id),
        )
        return await cur.fetchone()


async def set_callback_status(
    conn: Conn,
    business_id: uuid.UUID,
    delivery_id: uuid.UUID,
    status: str,
    provider_message_id: str,
    error: str,
) -> None:
    await conn.execute(
        """UPDATE delivery SET status = %s, last_error = %s, updated_at = now(),
                              provider_message_id = CASE WHEN provider_message_id = '' THEN %s
                                                         ELSE provider_message_id END
           WHERE business_id = %s AND delivery_id = %s""",
        (status, error[:1000], provider_message_id, business_id, delivery_id),
    )


async def latest_sms_reminder(conn: Conn, recipient: str, since: dt.datetime) -> DeliveryRow | None:
    async with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        await cur.execute(
            f"""SELECT {_DELIVERY_COLS} FROM delivery
                WHERE channel = 'sms' AND kind = 'reminder' AND recipient = %s
                  AND sent_at IS NOT NULL AND sent_at >= %s AND manage_token <> ''
                ORDER BY sent_at DESC LIMIT 1""",
            (recipient, since),
        )
        return await cur.fetchone()


# --- opt-outs ----------------------------------------------------------------------------------------


async def upsert_opt_out(
    conn: Conn, business_id: uuid.UUID, channel: str, address: str, reason: str
) -> OptOutRow:
    async with conn.cursor(row_factory=class_row(OptOutRow)) as cur:
        await cur.execute(
            f"""INSERT INTO opt_out (business_id, channel, address, reason) VALUES (%s, %s, %s, %s)
                ON CONFLICT (business_id, channel, address) DO UPDATE SET reason = EXCLUDED.reason
                RETURNING {_OPT_OUT_COLS}""",
            (business_id, channel, address, reason),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def delete_opt_out(conn: Conn, business_id: uuid.UUID, channel: str, address: str) -> bool:
    async with conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM opt_out WHERE business_id = %s AND channel = %s AND address = %s",
            (business_id, channel, address),
        )
        return cur.rowcount == 1


async def list_opt_outs(
    conn: Conn, business_id: uuid.UUID, after: tuple[str, str] | None, limit: int
) -> list[OptOutRow]:
    async with conn.cursor(row_factory=class_row(OptOutRow)) as cur:
        await cur.execute(
            f"""SELECT {_OPT_OUT_COLS} FROM opt_out
                WHERE business_id = %s AND (%s::text IS NULL OR (channel, address) > (%s, %s))
                ORDER BY channel, address LIMIT %s""",
            (business_id, after and after[0], after and after[0], after and after[1], limit),
        )
        return await cur.fetchall()


async def add_sms_stop(conn: Conn, address: str) -> None:
    await conn.execute("INSERT INTO sms_stop (address) VALUES (%s) ON CONFLICT DO NOTHING", (address,))


async def remove_sms_stop(conn: Conn, address: str) -> None:
    await conn.execute("DELETE FROM sms_stop WHERE address = %s", (address,))


# --- daily counters ----------------------------------------------------------------------------------

COUNTERS = ("sent", "delivered", "failed", "skipped")


async def count(conn: Conn, business_id: uuid.UUID, day: dt.date, channel: str, outcome: str) -> None:
    await count_many(conn, {(business_id, day, channel): {outcome: 1}})


async def count_many(conn: Conn, counts: Mapping[tuple[uuid.UUID, dt.date, str], Mapping[str, int]]) -> None:
    """Many `count`s in one statement: {(business_id, day, channel): {outcome: n}}. Rows are written in key
    order, so two transactions counting for the same businesses lock their rows in the same order."""
    keys = sorted(counts)
    for outcomes in counts.values():
        if unknown := set(outcomes) - set(COUNTERS):
            raise ValueError(f"unknown outcomes {sorted(unknown)}")
    columns = [[counts[key].get(outcome, 0) for key in keys] for outcome in COUNTERS]
    await conn.execute(
        """INSERT INTO delivery_daily (business_id, day, channel, sent, delivered, failed, skipped)
           SELECT * FROM unnest(%s::uuid[], %s::date[], %s::text[], %s::int[], %s::int[], %s::int[], %s::int[])
           ON CONFLICT (business_id, day, channel) DO UPDATE
           SET sent = delivery_daily.sent + EXCLUDED.sent,
               delivered = delivery_daily.delivered + EXCLUDED.delivered,
               failed = delivery_daily.failed + EXCLUDED.failed,
               skipped = delivery_daily.skipped + EXCLUDED.skipped""",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], *columns),
    )


async def daily(conn: Conn, business_id: uuid.UUID, day: dt.date) -> dict[str, dict[str, int]]:
    """{channel: {outcome: n}} for one business and day."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT channel, sent, delivered, failed, skipped FROM delivery_daily
               WHERE business_id = %s AND day = %s""",
            (business_id, day),
        )
        rows = await cur.fetchall()
    return {str(r[0]): dict(zip(COUNTERS, (int(v) for v in r[1:]), strict=True)) for r in rows}
