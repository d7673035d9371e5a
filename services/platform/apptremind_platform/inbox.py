"""The consumer inbox: `(consumer, message_id)` recorded in the same transaction as the side effect."""

from __future__ import annotations

from collections.abc import Sequence

from .db import Conn

_CLAIM = "INSERT INTO inbox (consumer, message_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_CLAIM_MANY = """INSERT INTO inbox (consumer, message_id)
                 SELECT %s, id FROM unnest(%s::text[]) AS id ORDER BY id
                 ON CONFLICT DO NOTHING RETURNING message_id"""


async def claim(conn: Conn, consumer: str, message_id: str) -> bool:
    """True the first time this consumer sees message_id; False for a duplicate (do nothing then).

    Must run inside the unit of work that applies the side effect: if that rolls back, so does the claim,
    and the redelivered message is processed again.
    """
    async with conn.cursor() as cur:
        await cur.execute(_CLAIM, (consumer, message_id))
        return cur.rowcount == 1


async def claim_many(conn: Conn, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """`claim` for many messages in one statement: the ids seen for the first time (ids must be distinct).
    They are inserted in sorted order, so two transactions claiming overlapping batches (a rebalance) lock
    the same index entries in the same order."""
    async with conn.cursor() as cur:
        await cur.execute(_CLAIM_MANY, (consumer, list(message_ids)))
        return {str(row[0]) for row in await cur.fetchall()}
