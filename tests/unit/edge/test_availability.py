"""Public availability and booking at the edge: the slug goes to booking-service (no business-service
call), and the availability micro-cache (ADR 0015): hits, expiry, bypass with a token or another field,
different variables, errors never cached. The booking upstream is a real grpc.aio server that records what
it is asked; nothing is mocked."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from starlette.types import Message, Receive, Scope, Send

from apptremind_edge.micro_cache import AvailabilityMicroCache
from apptremind_edge.rate_limit import SlidingWindow
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_platform.grpc_bridge import bind_service
from apptremind_platform.interceptors import ERROR_REASON_KEY

from .conftest import Edge, EdgeFactory

SERVICE = "apptremind.booking.v1.BookingService"
START = dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
QUERY = """query($slug: String!, $from: DateTime!) { availability(businessSlug: $slug, serviceId: "svc",
  from: $from, to: "2027-01-05T00:00:00Z", timeZone: "UTC") { startTime localStart } }"""
VARIABLES = {"slug": "salon", "from": "2027-01-04T00:00:00Z"}


class RecordingBooking:
    """Answers GetAvailability with one slot per call (so a reused answer is recognisable) and
    BookAppointment with an appointment of a fixed business; `unknown` slugs get NOT_FOUND."""

    def __init__(self) -> None:
        self.availability: list[pb.GetAvailabilityRequest] = []
        self.bookings: list[pb.BookAppointmentRequest] = []
        self.unknown = {"nobody"}

    async def _refuse_unknown(self, slug: str, context: Any) -> None:
        if slug in self.unknown:
            context.set_trailing_metadata(((ERROR_REASON_KEY, "business_not_found"),))
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such business")

    async def get_availability(
        self, request: pb.GetAvailabilityRequest, context: Any
    ) -> pb.GetAvailabilityResponse:
        self.availability.append(request)
        await self._refuse_unknown(request.business_slug, context)
        start = START + dt.timedelta(minutes=15 * len(self.availability))
        slot = pb.Slot(
            start_time=start, end_time=start + dt.timedelta(minutes=30), staff_id="st", local_start="x"
        )
        return pb.GetAvailabilityResponse(slots=[slot])

    async def book_appointment(
        self, request: pb.BookAppointmentRequest, context: Any
    ) -> pb.BookAppointmentResponse:
        self.bookings.append(request)
        await self._refuse_unknown(request.business_slug, context)
        appointment = pb.Appointment(
            appointment_id="a1",
            business_id="b1",
            staff_id="st",
            service_id=request.service_id,
            start_time=request.start_time,
            end_time=request.start_time,
            status=pb.AppointmentStatus.BOOKED,
            customer=request.customer,
        )
        return pb.BookAppointmentResponse(appointment=appointment, self_service_token="t")


@pytest.fixture
async def booking() -> AsyncIterator[tuple[str, RecordingBooking]]:
    servicer = RecordingBooking()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((bind_service(servicer, SERVICE),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


async def post(e: Edge, body: dict[str, Any], **headers: str) -> tuple[dict[str, Any], str]:
    """(the GraphQL body, the Cache-Status header)."""
    response = await e.client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    return payload, response.headers.get("cache-status", "")


def first_start(payload: dict[str, Any]) -> str:
    start: str = payload["data"]["availability"][0]["startTime"]
    return start


async def test_availability_names_the_business_by_slug_and_never_asks_business_service(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking], dead_target: str
) -> None:
    target, servicer = booking
    # business-service is unreachable: an answer proves the edge did not need it.
    async with edge(
        service_targets={"booking": target, "business": dead_target}, edge_availability_cache_ttl_s=0
    ) as e:
        payload, _ = await post(e, {"query": QUERY, "variables": {**VARIABLES, "slug": "  Salon "}})
    assert payload["data"]["availability"][0]["localStart"] == "x"
    [request] = servicer.availability
    assert (request.business_slug, request.business_id) == ("salon", "")


async def test_an_unknown_slug_is_not_found_as_before(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking]
) -> None:
    target, servicer = booking
    async with edge(service_targets={"booking": target}, edge_availability_cache_ttl_s=0) as e:
        unknown, _ = await post(e, {"query": QUERY, "variables": {**VARIABLES, "slug": "nobody"}})
        # An empty slug never reaches a service (unset, it would mean "no slug given").
        empty, _ = await post(e, {"query": QUERY, "variables": {**VARIABLES, "slug": "  "}})
    for payload in (unknown, empty):
        [error] = payload["errors"]
        assert error["message"] == "no such business"
        assert error["extensions"] == {"code": "NOT_FOUND", "reason": "business_not_found"}
    assert [r.business_slug for r in servicer.availability] == ["nobody"]


BOOK = """mutation($slug: String!) { bookAppointment(input: {businessSlug: $slug, serviceId: "svc",
  startTime: "2027-01-04T09:00:00Z", customer: {name: "C", email: "c@example.com"}}) { appointment { businessId } } }"""


async def test_bookings_go_by_slug_and_are_limited_per_business(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking], dead_target: str
) -> None:
    target, servicer = booking
    async with edge(
        service_targets={"booking": target, "business": dead_target},
        edge_bookings_per_business_per_minute=2,
    ) as e:
        codes = []
        for n, slug in enumerate(["salon", "SALON", " salon", "other"]):
            payload, _ = await post(
                e, {"query": BOOK, "variables": {"slug": slug}}, **{"idempotency-key": f"k{n}"}
            )
            codes.append(payload["errors"][0]["extensions"]["code"] if "errors" in payload else "ok")
    # Spellings of one slug share the business's allowance; another business has its own.
    assert codes == ["ok", "ok", "RATE_LIMITED", "ok"]
    assert [r.business_slug for r in servicer.bookings] == ["salon", "salon", "other"]
    assert all(r.business_id == "" for r in servicer.bookings)


# --- the micro-cache --------------------------------------------------------------------------------------


async def cached_edge(edge: EdgeFactory, target: str, **settings: Any) -> Any:
    return edge(service_targets={"booking": target}, **({"edge_availability_cache_ttl_s": 1.0} | settings))


async def test_a_repeated_request_is_answered_from_the_cache_until_the_ttl_ends(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking]
) -> None:
    target, servicer = booking
    now = [100.0]
    async with await cached_edge(edge, target) as e:
        e.app.state.availability_cache.clock = lambda: now[0]
        first, status1 = await post(e, {"query": QUERY, "variables": VARIABLES})
        now[0] += 0.9
        second, status2 = await post(e, {"query": QUERY, "variables": VARIABLES})
        now[0] += 0.2  # 1.1 s after the first request was asked
        third, status3 = await post(e, {"query": QUERY, "variables": VARIABLES})
    assert (status1, status2, status3) == (
        "apptremind-edge; fwd=miss",
        "apptremind-edge; hit",
        "apptremind-edge; fwd=miss",
    )
    assert second == first
    assert first_start(third) != first_start(first)
    assert len(servicer.availability) == 2


async def test_other_variables_or_another_operation_are_other_entries(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking]
) -> None:
    target, servicer = booking
    async with await cached_edge(edge, target) as e:
        a, _ = await post(e, {"query": QUERY, "variables": VARIABLES})
        b, _ = await post(e, {"query": QUERY, "variables": {**VARIABLES, "slug": "other"}})
        c, _ = await post(
            e, {"query": QUERY.replace("localStart", "localStart endTime"), "variables": VARIABLES}
        )
        # The same variables in another order are the same request.
        again, status = await post(e, {"query": QUERY, "variables": dict(reversed(VARIABLES.items()))})
    assert len({first_start(a), first_start(b), first_start(c)}) == 3
    assert (again, status) == (a, "apptremind-edge; hit")
    assert len(servicer.availability) == 3


async def test_requests_with_a_token_or_any_other_field_bypass_the_cache(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking]
) -> None:
    target, servicer = booking
    body = {"query": QUERY, "variables": VARIABLES}
    async with await cached_edge(edge, target) as e:
        await post(e, body)
        _, with_token = await post(e, body, authorization="Bearer whatever")
        _, with_cookie = await post(e, body, cookie="session=1")
        _, with_extensions = await post(e, {**body, "extensions": {"persistedQuery": {}}})
        two_fields = QUERY.replace(
            "{ startTime localStart } }", "{ startTime localStart } platformHealth { service } }"
        )
        _, other_field = await post(e, {"query": two_fields, "variables": VARIABLES})
        _, hit = await post(e, body)
    assert (with_token, with_cookie, with_extensions, other_field) == ("", "", "", "")
    assert hit == "apptremind-edge; hit"
    # Every bypass reached the service, the two-field operation too.
    assert len(servicer.availability) == 5


async def test_errors_are_never_cached(edge: EdgeFactory, booking: tuple[str, RecordingBooking]) -> None:
    target, servicer = booking
    body = {"query": QUERY, "variables": {**VARIABLES, "slug": "nobody"}}
    async with await cached_edge(edge, target) as e:
        first, _ = await post(e, body)
        servicer.unknown.clear()  # the business appears
        second, status = await post(e, body)
    assert first["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "errors" not in second and status == "apptremind-edge; fwd=miss"
    assert len(servicer.availability) == 2


async def test_a_hit_still_counts_against_the_per_ip_limit(
    edge: EdgeFactory, booking: tuple[str, RecordingBooking]
) -> None:
    target, servicer = booking
    body = {"query": QUERY, "variables": VARIABLES}
    async with await cached_edge(edge, target, edge_public_per_ip_per_minute=2) as e:
        answers = [await post(e, body) for _ in range(3)]
    # Over the limit, the request goes through to the resolver, which refuses it.
    assert [status for _, status in answers] == [
        "apptremind-edge; fwd=miss",
        "apptremind-edge; hit",
        "apptremind-edge; fwd=miss",
    ]
    assert answers[2][0]["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert len(servicer.availability) == 1


async def test_ttl_zero_turns_the_cache_off(edge: EdgeFactory, booking: tuple[str, RecordingBooking]) -> None:
    target, servicer = booking
    async with await cached_edge(edge, target, edge_availability_cache_ttl_s=0) as e:
        statuses = [(await post(e, {"query": QUERY, "variables": VARIABLES}))[1] for _ in range(2)]
    assert statuses == ["", ""]
    assert len(servicer.availability) == 2
    assert len(e.app.state.availability_cache) == 0


async def test_identical_requests_during_a_fetch_wait_for_it_instead_of_executing() -> None:
    """Driven through the ASGI wrapper alone, so the moment every request is waiting is known exactly."""
    gate = asyncio.Event()
    calls = 0

    async def upstream(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        await receive()
        await gate.wait()
        body = json.dumps({"data": {"availability": [{"n": calls}]}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    cache = AvailabilityMicroCache(upstream, 1.0, SlidingWindow(100, 60.0))
    request = json.dumps({"query": QUERY, "variables": VARIABLES}).encode()

    async def one() -> tuple[bytes, bytes]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": request, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "client": ("10.0.0.1", 1),
        }
        await cache(scope, receive, send)
        status = dict(sent[0]["headers"]).get(b"cache-status", b"")
        return status, sent[1]["body"]

    answers = asyncio.gather(*(one() for _ in range(5)))
    for _ in range(20):  # no I/O anywhere: a few turns of the loop bring every request to its wait
        await asyncio.sleep(0)
    assert calls == 1
    gate.set()
    results = await answers
    assert calls == 1
    assert len({body for _, body in results}) == 1
    assert (
        sorted(status for status, _ in results)
        == [b"apptremind-edge; fwd=miss"] + [b"apptremind-edge; hit"] * 4
    )
