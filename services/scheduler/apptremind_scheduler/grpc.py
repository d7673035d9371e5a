"""The scheduler-service's gRPC servicer (apptremind.scheduler.v1.SchedulerService).

Thin on purpose: authorise, convert, run the use case in one unit of work, convert back. Members of a
business read its jobs; owners and admins schedule and cancel them.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.scheduler import v1 as pb
from apptremind_gen.google.protobuf import Any as AnyMessage
from apptremind_platform import pagination
from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.identity import current_caller

from . import metrics, repository, service
from .repository import JobRow
from .wakeup import Wakeup

SERVICE = "apptremind.scheduler.v1.SchedulerService"

Context = Any  # grpc.aio.ServicerContext; unused, the interceptor maps errors to statuses

_STATE_TO_PB = {
    repository.SCHEDULED: pb.JobState.SCHEDULED,
    repository.RUNNING: pb.JobState.RUNNING,
    repository.COMPLETED: pb.JobState.COMPLETED,
    repository.CANCELLED: pb.JobState.CANCELLED,
    repository.FAILED: pb.JobState.FAILED,
}
_STATE_FROM_PB = {int(v): k for k, v in _STATE_TO_PB.items()}


def job_message(row: JobRow) -> pb.Job:
    return pb.Job(
        job_id=str(row.job_id),
        business_id=str(row.business_id),
        idempotency_key=row.idempotency_key,
        due_at=row.due_at,
        topic=row.topic,
        payload=AnyMessage(type_url=row.payload_type_url, value=bytes(row.payload))
        if row.payload_type_url
        else None,
        state=_STATE_TO_PB[row.state],
        attempts=row.attempts,
        last_error=row.last_error,
        key=row.key,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _authorise(business_id: str, manager: bool) -> uuid.UUID:
    # Authorise before parsing: an outsider learns nothing from the shape of the ids it sends.
    caller = current_caller.get()
    if manager:
        caller.require_manager(business_id)
    else:
        caller.require_role(business_id)
    return service.parse_id(business_id, "business_id")


class SchedulerServiceServicer:
    def __init__(self, pool: AsyncConnectionPool, wakeup: Wakeup) -> None:
        self._pool = pool
        self._wakeup = wakeup

    async def schedule(self, request: pb.ScheduleRequest, context: Context) -> pb.ScheduleResponse:
        business_id = _authorise(request.business_id, manager=True)
        payload = request.payload or AnyMessage()
        job = service.new_job(
            business_id,
            request.idempotency_key,
            request.due_at,
            request.topic,
            request.key,
            payload.type_url,
            bytes(payload.value),
        )
        async with unit_of_work(self._pool) as conn:
            row, created = await service.schedule(conn, job)
        if created:
            metrics.JOBS_SCHEDULED.labels("rpc").inc()
            # Idle workers may be sleeping past this job's due time; after commit, so they see it.
            self._wakeup.notify()
        return pb.ScheduleResponse(job=job_message(row))

    async def cancel(self, request: pb.CancelRequest, context: Context) -> pb.CancelResponse:
        business_id = _authorise(request.business_id, manager=True)
        async with unit_of_work(self._pool) as conn:
            row = await service.cancel(conn, business_id, request.idempotency_key)
        metrics.JOBS_CANCELLED.labels("rpc").inc()
        return pb.CancelResponse(job=job_message(row))

    async def get(self, request: pb.GetRequest, context: Context) -> pb.GetResponse:
        business_id = _authorise(request.business_id, manager=False)
        async with unit_of_work(self._pool) as conn:
            row = await service.get(conn, business_id, request.idempotency_key)
        return pb.GetResponse(job=job_message(row))

    async def list(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        business_id = _authorise(request.business_id, manager=False)
        state: str | None = None
        if int(request.state) != int(pb.JobState.UNSPECIFIED):
            state = _STATE_FROM_PB.get(int(request.state))
            if state is None:
                raise InvalidArgument("invalid_state", f"unknown job state {int(request.state)}")
        size = pagination.page_size(request.page_size)
        scope = f"scheduler.jobs:{business_id}:{state or 'all'}"
        after = pagination.decode_page_token(scope, request.page_token)
        async with unit_of_work(self._pool) as conn:
            rows = await repository.list_jobs(conn, business_id, state, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        token = pagination.encode_page_token(scope, rows[-1].job_id) if more and rows else ""
        return pb.ListResponse(jobs=[job_message(r) for r in rows], next_page_token=token)
