"""The consumer inbox: `(consumer, message_id)` recorded in the same transaction as the side effect."""

from __future__ import annotations

from .db import Conn

_CLAIM = "INSERT INTO inbox (consumer, message_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"


async def claim(conn: Conn, consumer: str, message_id: str) -> bool:
    """True the first time this consumer sees message_id; False for a duplicate (do nothing then).

    Must run inside the unit of work that applies the side effect: if that rolls back, so does the claim,
    and the redelivered message is processed again.
    """
    async with conn.cursor() as cur:
        await cur.execute(_CLAIM, (consumer, message_id))
        return cur.rowcount == 1
