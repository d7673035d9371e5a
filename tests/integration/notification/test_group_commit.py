"""GroupCommit against the real database: concurrent works share one transaction, each caller gets its own
result after the commit, and a failing work fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from apptremind_notification.group_commit import GroupCommit
from apptremind_platform.db import Conn
from tests.integration.notification.conftest import Notification


async def txid(conn: Conn) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT txid_current()")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_concurrent_works_share_one_commit(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    group = GroupCommit(harness.runtime.pool)
    ids = await asyncio.gather(*(group(txid) for _ in range(20)))
    assert len(set(ids)) == 1
    # A lone caller later gets a transaction of its own.
    assert await group(txid) != ids[0]


async def test_a_failing_work_fails_only_its_caller(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    group = GroupCommit(harness.runtime.pool)
    marker = f"group-commit-{id(group)}"

    def insert(n: int) -> Callable[[Conn], Awaitable[int]]:
        async def work(conn: Conn) -> int:
            await conn.execute("INSERT INTO sms_stop (address) VALUES (%s)", (f"{marker}-{n}",))
            return n

        return work

    async def broken(conn: Conn) -> int:
        await conn.execute("INSERT INTO sms_stop (address) VALUES (%s)", (f"{marker}-broken",))
        raise ValueError("this work is broken")

    results = await asyncio.gather(group(insert(1)), group(broken), group(insert(2)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)
    rows = harness.db.execute("SELECT address FROM sms_stop WHERE address LIKE %s", (f"{marker}-%",))
    # The broken work's insert was rolled back; the others were run again and committed.
    assert sorted(str(r[0]) for r in rows) == [f"{marker}-1", f"{marker}-2"]


async def test_a_database_error_reaches_the_caller(harness: Notification) -> None:
    assert harness.runtime.pool is not None
    group = GroupCommit(harness.runtime.pool)

    async def bad_sql(conn: Conn) -> None:
        await conn.execute("SELECT no_such_column FROM delivery")

    with pytest.raises(Exception, match="no_such_column"):
        await group(bad_sql)
    assert await group(txid) > 0
