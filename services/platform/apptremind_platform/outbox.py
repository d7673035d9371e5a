"""The transactional outbox: `add(conn, event)` writes the event in the caller's transaction.

The relay (relay.py) later publishes rows to Kafka in id order. Rows of one key are written one transaction
at a time (a transaction-scoped advisory lock on the key), so for any key, id order is commit order and the
relay can never see a later row of a key before an earlier one has committed.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg.types.json import Jsonb

from .db import Conn
from .envelope import Event, encode, headers_for
from .tracing import current_trace_id, inject_headers

# One round trip: the row (and its id, from the sequence) is made only after the key's lock is held, since
# the lock's CTE produces the row the INSERT takes its values from.
_LOCK_AND_INSERT = """WITH locked AS (SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0)))
    INSERT INTO outbox (topic, key, payload, headers)
    SELECT %(topic)s, %(key)s, %(payload)s, %(headers)s FROM locked"""


async def add(conn: Conn, event: Event, source: str) -> None:
    headers = headers_for(event)
    for name, value in inject_headers():
        headers[name] = value.decode()
    payload = encode(event, source=source, trace_id=current_trace_id())
    await add_raw(conn, event.topic, event.partition_key, payload, headers)


async def add_raw(conn: Conn, topic: str, key: str, payload: bytes, headers: Mapping[str, str]) -> None:
    """Write an already-encoded message (the DLQ path forwards poison bytes untouched)."""
    await conn.execute(
        _LOCK_AND_INSERT, {"key": key, "topic": topic, "payload": payload, "headers": Jsonb(dict(headers))}
    )
