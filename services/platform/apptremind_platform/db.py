"""Postgres access: one async pool per process and a unit-of-work helper.

All SQL must also run through pgbouncer in transaction pooling mode, so the pool disables server-side
prepared statements (prepare_threshold=None) and no code relies on session state (SET, session advisory
locks, LISTEN) outliving a transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

Conn = AsyncConnection[TupleRow]


async def open_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, name: str = "app"
) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        kwargs={"prepare_threshold": None, "autocommit": False},
        # A lost database must not block startup forever; readiness reports it instead.
        timeout=5.0,
        reconnect_timeout=0,
    )
    await pool.open(wait=False)
    return pool


@asynccontextmanager
async def unit_of_work(pool: AsyncConnectionPool) -> AsyncIterator[Conn]:
    """One transaction: commits when the block ends, rolls back when it raises.

    Services never commit by themselves; the request or message edge opens the unit of work, so the domain
    change, its outbox rows and the inbox record land together or not at all.
    """
    async with pool.connection() as conn, conn.transaction():
        yield conn
