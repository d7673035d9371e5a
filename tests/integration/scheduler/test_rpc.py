"""SchedulerService over real gRPC: schedule, idempotency, cancel, get, list, bad input and tenancy."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from apptremind_gen.apptremind.events.booking.v1 import ReminderCancelled
from apptremind_gen.apptremind.scheduler import v1 as pb
from apptremind_gen.google.protobuf import Any as AnyMessage
from tests.integration.scheduler.support import DUE_TOPIC, Harness, Metadata, expect_error

# Never due while the suite runs: the session service's worker claims and emits any job due in the past,
# so a near fixed date (it was 2031-01-01) would change these jobs' states under the tests from that day on.
FAR = dt.datetime(2099, 1, 1, 9, 0, tzinfo=dt.UTC)
PAYLOAD = AnyMessage.pack(ReminderCancelled(business_id="b", appointment_id="a", idempotency_key="k"))


def request(business_id: str, idem: str = "job-1", **fields: object) -> pb.ScheduleRequest:
    values: dict[str, object] = {
        "business_id": business_id,
        "idempotency_key": idem,
        "due_at": FAR,
        "topic": DUE_TOPIC,
        "payload": PAYLOAD,
    }
    return pb.ScheduleRequest(**(values | fields))


async def get(h: Harness, business_id: str, idem: str, metadata: Metadata) -> pb.Job:
    response = await h.call(
        "Get", pb.GetRequest(business_id=business_id, idempotency_key=idem), pb.GetResponse, metadata
    )
    assert response.job is not None
    return response.job


async def cancel(h: Harness, business_id: str, idem: str, metadata: Metadata) -> pb.Job:
    response = await h.call(
        "Cancel", pb.CancelRequest(business_id=business_id, idempotency_key=idem), pb.CancelResponse, metadata
    )
    assert response.job is not None
    return response.job


async def list_jobs(h: Harness, metadata: Metadata, **fields: object) -> pb.ListResponse:
    return await h.call("List", pb.ListRequest(**fields), pb.ListResponse, metadata)


async def test_schedule_creates_a_job_and_get_returns_it(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    job = await scheduler.schedule(request(business_id, "appt|2099|email"), owner)
    assert (job.business_id, job.idempotency_key, job.due_at, job.topic, job.state, job.attempts) == (
        business_id,
        "appt|2099|email",
        FAR,
        DUE_TOPIC,
        pb.JobState.SCHEDULED,
        0,
    )
    # The partition key defaults to the idempotency key; the payload is kept byte for byte.
    assert job.key == "appt|2099|email"
    assert job.payload == PAYLOAD
    assert job.next_attempt_at == FAR
    uuid.UUID(job.job_id)
    assert await get(scheduler, business_id, "appt|2099|email", owner) == job


async def test_same_request_again_returns_the_existing_job(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    first = await scheduler.schedule(request(business_id, "k", key="appointment-1"), owner)
    again = await scheduler.schedule(request(business_id, "k", key="appointment-1"), owner)
    assert again == first
    assert first.key == "appointment-1"
    assert len(scheduler.jobs(business_id)) == 1


async def test_same_key_with_a_different_request_is_refused_and_changes_nothing(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    first = await scheduler.schedule(request(business_id, "k"), owner)
    for changed in (
        request(business_id, "k", due_at=FAR + dt.timedelta(seconds=1)),
        request(business_id, "k", key="other-partition-key"),
        request(business_id, "k", payload=AnyMessage.pack(ReminderCancelled(business_id="other"))),
        request(business_id, "k", payload=None),
    ):
        await expect_error(
            scheduler.schedule(changed, owner), grpc.StatusCode.ALREADY_EXISTS, "idempotency_key_reused"
        )
    assert await get(scheduler, business_id, "k", owner) == first


async def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    cases = [
        (request(business_id, ""), "invalid_idempotency_key"),
        (request(business_id, "x" * 501), "invalid_idempotency_key"),
        (request(business_id, due_at=None), "missing_due_at"),
        (request(business_id, topic="no.such.topic.v1"), "unknown_topic"),
        (request(business_id, topic=DUE_TOPIC + ".dlq"), "unknown_topic"),
        # Declared, but its messages are not JobDue events: the due event could never be encoded.
        (request(business_id, topic="booking.appointment.booked.v1"), "topic_not_for_jobs"),
        (request(business_id, key="k" * 501), "invalid_key"),
        (request(business_id, payload=AnyMessage(type_url="", value=b"\x01")), "invalid_payload"),
        (
            request(business_id, payload=AnyMessage(type_url="t", value=b"x" * (256 * 1024 + 1))),
            "payload_too_large",
        ),
    ]
    for bad, reason in cases:
        await expect_error(scheduler.schedule(bad, owner), grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert scheduler.jobs(business_id) == []
    # A malformed business id is refused too (by the membership check: the token cannot name it).
    malformed = scheduler.metadata(str(uuid.uuid4()), {"not-a-uuid": "owner"})
    await expect_error(
        scheduler.schedule(request("not-a-uuid"), malformed),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_business_id",
    )


async def test_cancel_a_scheduled_job_then_again(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    await scheduler.schedule(request(business_id, "c"), owner)
    cancelled = await cancel(scheduler, business_id, "c", owner)
    assert cancelled.state == pb.JobState.CANCELLED
    # Cancelling twice is harmless and answers the same job; the same schedule request returns it as is.
    assert (await cancel(scheduler, business_id, "c", owner)).state == pb.JobState.CANCELLED
    assert (await scheduler.schedule(request(business_id, "c"), owner)).state == pb.JobState.CANCELLED
    assert scheduler.jobs(business_id) == [("c", "cancelled", DUE_TOPIC, 0)]


async def test_cancel_refuses_unknown_running_completed_and_failed_jobs(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    await expect_error(
        cancel(scheduler, business_id, "nope", owner), grpc.StatusCode.NOT_FOUND, "job_not_found"
    )
    await expect_error(
        cancel(scheduler, business_id, "", owner), grpc.StatusCode.INVALID_ARGUMENT, "invalid_idempotency_key"
    )
    for state in ("running", "completed", "failed"):
        await scheduler.schedule(request(business_id, state), owner)
        lease = (
            ", lease_owner = 'w', lease_expires_at = now() + interval '1 hour'" if state == "running" else ""
        )
        scheduler.db.execute(
            f"UPDATE job SET state = %s{lease} WHERE business_id = %s AND idempotency_key = %s",
            (state, business_id, state),
        )
        await expect_error(
            cancel(scheduler, business_id, state, owner), grpc.StatusCode.FAILED_PRECONDITION, f"job_{state}"
        )
        assert (await get(scheduler, business_id, state, owner)).state == getattr(pb.JobState, state.upper())


async def test_list_pages_through_jobs_with_a_state_filter(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    keys = [f"job-{i:02d}" for i in range(7)]
    for k in keys:
        await scheduler.schedule(request(business_id, k), owner)
    await cancel(scheduler, business_id, "job-03", owner)

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await list_jobs(scheduler, owner, business_id=business_id, page_size=3, page_token=token)
        seen += [j.idempotency_key for j in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == (keys, 3)

    scheduled = await list_jobs(scheduler, owner, business_id=business_id, state=pb.JobState.SCHEDULED)
    assert [j.idempotency_key for j in scheduled.jobs] == [k for k in keys if k != "job-03"]
    cancelled = await list_jobs(scheduler, owner, business_id=business_id, state=pb.JobState.CANCELLED)
    assert [j.idempotency_key for j in cancelled.jobs] == ["job-03"]

    # A token of one list is refused by another (other filter), and a garbage token is refused.
    first = await list_jobs(scheduler, owner, business_id=business_id, page_size=2)
    await expect_error(
        list_jobs(
            scheduler,
            owner,
            business_id=business_id,
            state=pb.JobState.SCHEDULED,
            page_token=first.next_page_token,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_page_token",
    )
    await expect_error(
        list_jobs(scheduler, owner, business_id=business_id, page_size=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_page_size",
    )


async def test_members_read_managers_write_and_other_businesses_see_nothing(scheduler: Harness) -> None:
    business_id, owner = scheduler.tenant()
    await scheduler.schedule(request(business_id, "mine"), owner)
    staff = scheduler.metadata(str(uuid.uuid4()), {business_id: "staff"})
    admin = scheduler.metadata(str(uuid.uuid4()), {business_id: "admin"})
    other_business, outsider = scheduler.tenant()

    # Staff read but do not schedule or cancel.
    assert (await get(scheduler, business_id, "mine", staff)).idempotency_key == "mine"
    assert len((await list_jobs(scheduler, staff, business_id=business_id)).jobs) == 1
    await expect_error(
        scheduler.schedule(request(business_id, "staff-job"), staff),
        grpc.StatusCode.PERMISSION_DENIED,
        "insufficient_role",
    )
    await expect_error(
        cancel(scheduler, business_id, "mine", staff), grpc.StatusCode.PERMISSION_DENIED, "insufficient_role"
    )
    # An admin manages.
    assert (await scheduler.schedule(request(business_id, "admin-job"), admin)).idempotency_key == "admin-job"

    # Another business's token is refused on this business ...
    for call in (
        get(scheduler, business_id, "mine", outsider),
        list_jobs(scheduler, outsider, business_id=business_id),
        cancel(scheduler, business_id, "mine", outsider),
        scheduler.schedule(request(business_id, "intruder"), outsider),
    ):
        await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "not_a_member")
    # ... and within its own business the same key does not exist.
    await expect_error(
        get(scheduler, other_business, "mine", outsider), grpc.StatusCode.NOT_FOUND, "job_not_found"
    )
    await expect_error(
        cancel(scheduler, other_business, "mine", outsider), grpc.StatusCode.NOT_FOUND, "job_not_found"
    )
    assert (await list_jobs(scheduler, outsider, business_id=other_business)).jobs == []
    # No token at all.
    await expect_error(
        get(scheduler, business_id, "mine", []), grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"
    )
    assert [row[0] for row in scheduler.jobs(business_id)] == ["mine", "admin-job"]
    assert scheduler.jobs(other_business) == []
