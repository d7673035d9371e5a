"""Group commit: the small transactions of many messages handled at once share one transaction, so the
pipeline pays one commit (one WAL flush, one pool checkout) per group instead of one per write.

Each caller still gets its own result only after the transaction holding its work has committed, so a
caller can rely on its write being durable exactly as with a unit of work of its own. Works are queued as
they come; a flush takes everything queued so far (up to `max_group`), runs the works one after the other
on one connection and commits; at most `max_inflight` flushes run at once, and while they run the next
group fills up, so groups grow with the load and a lone write waits for nothing.

A work that raises rolls its group back: that caller gets the error and the other works are queued again
(they did nothing wrong), as is a whole group the server rolled back to break a deadlock. A lost
connection or a failed commit fails the whole group, since whether it committed is unknown; every caller
then handles the error as it would handle a failed unit of work of its own (the MessageProcessor retries
the message).

A group holds the locks of all its works until it commits. Its works run in key order (the business), so
groups in different processes take the businesses' outbox locks in the same order and cannot deadlock on
them. Within one business a group may still take the outbox lock and a counter row in either order; one
flush at a time per process (`max_inflight=1`, the default) keeps a process from deadlocking with itself,
and between processes the server breaks such a rare deadlock (after `deadlock_timeout`) and the group that
lost runs again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from apptremind_platform.db import Conn

T = TypeVar("T")


@dataclass(slots=True)
class _Queued:
    work: Callable[[Conn], Awaitable[Any]]
    done: asyncio.Future[Any]
    key: str


class _WorkFailed(Exception):
    def __init__(self, index: int, error: Exception) -> None:
        self.index = index
        self.error = error


class GroupCommit:
    """`await group(work)`: runs `work(conn)` in a transaction shared with other callers' works and
    returns its result once committed (a `processing.Transactor`)."""

    def __init__(self, pool: AsyncConnectionPool, max_group: int = 200, max_inflight: int = 1) -> None:
        self._pool = pool
        self._max_group = max_group
        self._max_inflight = max_inflight
        self._queue: list[_Queued] = []
        self._inflight = 0
        # A flush is scheduled and has not taken its group yet: later callers join that one.
        self._starting = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, work: Callable[[Conn], Awaitable[T]], /, key: str = "") -> T:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(work, done, key))
        self._start_flush()
        return await done

    def _start_flush(self) -> None:
        if self._queue and not self._starting and self._inflight < self._max_inflight:
            self._starting = True
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        taken = False
        try:
            # Every caller that is ready in this turn of the event loop joins the group first.
            await asyncio.sleep(0)
            self._starting, taken = False, True
            # A caller cancelled before its work started has given up on it: it is not run.
            queued = [q for q in self._queue if not q.done.cancelled()]
            group, self._queue = queued[: self._max_group], queued[self._max_group :]
            # Works in key (business) order: every group, in every process, then takes the businesses'
            # outbox locks in the same order, so two groups cannot each hold one the other waits for.
            group.sort(key=lambda q: q.key)
            self._start_flush()
            if group:
                await self._run(group)
        finally:
            if not taken:
                self._starting = False
            self._inflight -= 1
            self._start_flush()

    async def _run(self, group: list[_Queued]) -> None:
        results: list[Any] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                for index, queued in enumerate(group):
                    try:
                        results.append(await queued.work(conn))
                    except psycopg.OperationalError:
                        raise
                    except Exception as exc:
                        raise _WorkFailed(index, exc) from exc
        except psycopg.errors.TransactionRollback:
            # A deadlock with another process's transaction (both take row and advisory locks in no
            # agreed order): the server rolled this one back for certain, so the whole group goes again.
            self._queue[:0] = group
            return
        except _WorkFailed as failed:
            _settle(group[failed.index].done, error=failed.error)
            # Rolled back with the failing one, through no fault of their own: they go again.
            self._queue[:0] = group[: failed.index] + group[failed.index + 1 :]
            return
        except Exception as exc:
            for queued in group:
                _settle(queued.done, error=exc)
            return
        except BaseException:
            # Cancelled mid-transaction (the worker is stopping): nobody may wait for this group forever.
            for queued in group:
                queued.done.cancel()
            raise
        for queued, result in zip(group, results, strict=True):
            _settle(queued.done, result=result)


def _settle(done: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
