"""Booking through the real edge: availability from the read model, a 200-way race for one slot with
exactly one winner, idempotent replays, and the customer's self-service cancel and reschedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from tests.e2e.conftest import Platform, platform_running
from tests.e2e.test_signup_and_catalog import add_staff, sign_up_owner

AVAILABILITY = """query($slug: String!, $service: ID!, $from: DateTime!, $to: DateTime!, $tz: String!) {
  availability(businessSlug: $slug, serviceId: $service, from: $from, to: $to, timeZone: $tz) {
    startTime staffId localStart } }"""
BOOK = """mutation($slug: String!, $service: ID!, $start: DateTime!, $name: String!, $email: String!) {
  bookAppointment(input: {businessSlug: $slug, serviceId: $service, startTime: $start,
                          customer: {name: $name, email: $email, timeZone: "America/New_York"}}) {
    appointment { id status startTime } selfServiceToken replayed } }"""


@pytest.fixture
async def salon(postgres: PostgresServer, kafka: KafkaBroker) -> Any:
    # 200 customers at once from one test client: lift the per-IP limit, which another test trips. They all
    # queue for booking's connections in one process: a deadline and a pool for that queue on a loaded
    # machine, since the race is about who wins, not how fast 200 calls get through.
    async with platform_running(
        postgres,
        kafka,
        services=("auth", "business", "booking"),
        booking_overrides={"db_pool_max": 20},
        edge_public_per_ip_per_minute=1000,
        edge_call_timeout_s=30,
    ) as platform:
        owner = await sign_up_owner(platform, "booking-salon")
        token, business_id = owner["token"], owner["business_id"]
        staff = await add_staff(platform, token, business_id, "Ada")
        service = (
            await platform.ok(
                """mutation($b: ID!, $s: ID!) { createService(input: {businessId: $b, name: "Cut",
                     durationMinutes: 30, priceMinor: 2500, staffIds: [$s]}) { id } }""",
                token,
                b=business_id,
                s=staff,
            )
        )["createService"]["id"]
        yield platform, owner, service


def window() -> tuple[str, str]:
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    return start.isoformat(), (start + dt.timedelta(days=1)).isoformat()


async def open_slots(platform: Platform, service: str) -> list[dict[str, Any]]:
    """The window's slots once the booking-service's read model has caught up with the catalog events
    (until then the service is unknown to it: NOT_FOUND)."""
    frm, to = window()
    variables = {"slug": "booking-salon", "service": service, "from": frm, "to": to, "tz": "America/New_York"}
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        body = await platform.gql(AVAILABILITY, **variables)
        slots: list[dict[str, Any]] = (body.get("data") or {}).get("availability") or []
        if slots:
            return slots
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes <= {"NOT_FOUND"}, body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def first_slot(platform: Platform, service: str) -> dict[str, Any]:
    return (await open_slots(platform, service))[0]


async def book(platform: Platform, service: str, start: str, key: str, name: str = "C") -> dict[str, Any]:
    response = await platform.client.post(
        "/graphql",
        json={
            "query": BOOK,
            "variables": {
                "slug": "booking-salon",
                "service": service,
                "start": start,
                "name": name,
                "email": f"{name}@example.com",
            },
        },
        headers={"idempotency-key": key},
    )
    body: dict[str, Any] = response.json()
    return body


async def test_two_hundred_concurrent_bookings_of_one_slot_have_one_winner(salon: Any) -> None:
    platform, _, service = salon
    slot = await first_slot(platform, service)
    assert slot["localStart"].endswith(("-05:00", "-04:00"))  # the customer's zone, not the business's
    results = await asyncio.gather(
        *(book(platform, service, slot["startTime"], uuid.uuid4().hex, f"c{i}") for i in range(200))
    )
    winners = [r for r in results if not r.get("errors")]
    losers = [r["errors"][0]["extensions"] for r in results if r.get("errors")]
    assert len(winners) == 1
    assert len(losers) == 199
    assert {(e["code"], e.get("reason")) for e in losers} == {("CONFLICT", "slot_taken")}
    booking_db = platform.dbs["booking"]
    assert booking_db.execute("SELECT count(*) FROM appointment WHERE status = 'booked'") == [(1,)]


async def test_replays_and_self_service(salon: Any) -> None:
    platform, _, service = salon
    slots = await open_slots(platform, service)
    slot = slots[0]
    key = uuid.uuid4().hex
    first = await book(platform, service, slot["startTime"], key, "dana")
    again = await book(platform, service, slot["startTime"], key, "dana")
    assert not first.get("errors"), first
    assert again["data"]["bookAppointment"]["replayed"] is True
    assert (
        again["data"]["bookAppointment"]["appointment"]["id"]
        == first["data"]["bookAppointment"]["appointment"]["id"]
    )
    conflict = await book(platform, service, slot["startTime"], key, "someone-else")
    assert conflict["errors"][0]["extensions"]["reason"] == "idempotency_key_reused"

    token = first["data"]["bookAppointment"]["selfServiceToken"]
    # An offered start at least two hours later. Not simply the first slot + 2 h: the staff work 08:00-20:00
    # Berlin and the window starts at whatever hour the test runs, so that may be past closing time.
    first_start = dt.datetime.fromisoformat(slot["startTime"])
    later = next(
        s["startTime"]
        for s in slots
        if dt.datetime.fromisoformat(s["startTime"]) >= first_start + dt.timedelta(hours=2)
    )
    moved = await platform.ok(
        "mutation($t: String!, $s: DateTime!) { rescheduleAppointment(token: $t, start: $s) { startTime status } }",
        t=token,
        s=later,
    )
    assert dt.datetime.fromisoformat(
        moved["rescheduleAppointment"]["startTime"]
    ) == dt.datetime.fromisoformat(later)
    cancelled = await platform.ok(
        'mutation($t: String!) { cancelAppointment(token: $t, reason: "ill") { status } }', t=token
    )
    assert cancelled["cancelAppointment"]["status"] == "CANCELLED"
    forged = await platform.gql('mutation { cancelAppointment(token: "forged.token") { status } }')
    assert forged["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "BAD_USER_INPUT")


async def test_public_booking_is_rate_limited_per_ip(postgres: PostgresServer, kafka: KafkaBroker) -> None:
    async with platform_running(
        postgres, kafka, services=("auth", "business", "booking"), edge_public_per_ip_per_minute=3
    ) as platform:
        query = 'query { availability(businessSlug: "nobody", serviceId: "x", from: "2027-01-01T00:00:00Z", to: "2027-01-02T00:00:00Z", timeZone: "UTC") { localStart } }'
        codes = [(await platform.gql(query))["errors"][0]["extensions"]["code"] for _ in range(4)]
    assert codes == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "RATE_LIMITED"]


DAY = """query($b: ID!, $from: DateTime!, $to: DateTime!, $status: AppointmentStatus, $after: String) {
  appointments(businessId: $b, from: $from, to: $to, status: $status, first: 2, after: $after) {
    nodes { id status startTime confirmedAt customer { name } } pageInfo { hasNextPage endCursor } } }"""


async def day_view(
    platform: Platform, owner: dict[str, Any], status: str | None = None
) -> list[dict[str, Any]]:
    """Every appointment of the test window, following the cursor two at a time."""
    frm, _ = window()
    to = (dt.datetime.fromisoformat(frm) + dt.timedelta(days=3)).isoformat()
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (
            await platform.ok(
                DAY,
                owner["token"],
                b=owner["business_id"],
                to=to,
                status=status,
                after=after,
                **{"from": frm},
            )
        )["appointments"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_the_business_manages_its_day(salon: Any) -> None:
    platform, owner, service = salon
    await first_slot(platform, service)  # the read model has caught up
    frm, to = window()
    slots = (
        await platform.ok(
            AVAILABILITY, slug="booking-salon", service=service, tz="UTC", **{"from": frm, "to": to}
        )
    )["availability"]
    booked = []
    # Every other slot: the 15 min grid offers overlapping starts for a 30 min service.
    for i, slot in enumerate(slots[-9::2]):
        body = await book(platform, service, slot["startTime"], uuid.uuid4().hex, f"day{i}")
        assert not body.get("errors"), body
        booked.append(body["data"]["bookAppointment"])
    ids = [b["appointment"]["id"] for b in booked]

    listed = await day_view(platform, owner)
    mine = [n for n in listed if n["id"] in ids]
    assert [n["id"] for n in mine] == ids  # in start order, across pages of two
    assert [n["startTime"] for n in listed] == sorted(n["startTime"] for n in listed)

    def lifecycle(op: str, aid: str) -> Any:
        return platform.gql(
            f"mutation($b: ID!, $a: ID!) {{ {op}(businessId: $b, appointmentId: $a) {{ status }} }}",
            owner["token"],
            b=owner["business_id"],
            a=aid,
        )

    assert (await lifecycle("completeAppointment", ids[0]))["data"]["completeAppointment"][
        "status"
    ] == "COMPLETED"
    assert (await lifecycle("markNoShow", ids[1]))["data"]["markNoShow"]["status"] == "NO_SHOW"
    refused = await lifecycle("markNoShow", ids[0])
    assert refused["errors"][0]["extensions"]["code"] == "FAILED_PRECONDITION"
    assert refused["errors"][0]["extensions"]["reason"] == "invalid_transition"

    confirmed = await platform.ok(
        "mutation($t: String!) { confirmAppointment(token: $t) { confirmedAt status } }",
        t=booked[2]["selfServiceToken"],
    )
    assert confirmed["confirmAppointment"]["confirmedAt"] is not None

    assert [n["id"] for n in await day_view(platform, owner, "COMPLETED")] == [ids[0]]
    assert [n["id"] for n in await day_view(platform, owner, "NO_SHOW")] == [ids[1]]
    still = {n["id"]: n for n in await day_view(platform, owner, "BOOKED")}
    assert set(ids[2:]) <= set(still)
    assert still[ids[2]]["confirmedAt"] is not None and still[ids[3]]["confirmedAt"] is None

    anonymous = await platform.gql(DAY, b=owner["business_id"], to=to, **{"from": frm})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


FOREIGN_CASES: list[tuple[str, str, str]] = [
    (
        "appointments",
        "query($b: ID!, $f: DateTime!, $t: DateTime!) { appointments(businessId: $b, from: $f, to: $t) { nodes { id } } }",
        "FORBIDDEN",
    ),
    (
        "completeAppointment",
        "mutation($b: ID!, $x: ID!) { completeAppointment(businessId: $b, appointmentId: $x) { id } }",
        "FORBIDDEN",
    ),
    (
        "markNoShow",
        "mutation($b: ID!, $x: ID!) { markNoShow(businessId: $b, appointmentId: $x) { id } }",
        "FORBIDDEN",
    ),
    (
        "cancelAppointment",
        "mutation($b: ID!, $x: ID!) { cancelAppointment(businessId: $b, appointmentId: $x) { id } }",
        "FORBIDDEN",
    ),
    (
        "confirmAppointment",
        "mutation($b: ID!, $x: ID!) { confirmAppointment(businessId: $b, appointmentId: $x) { id } }",
        "FORBIDDEN",
    ),
    (
        "rescheduleAppointment",
        "mutation($b: ID!, $x: ID!, $s: DateTime!) { rescheduleAppointment(businessId: $b, appointmentId: $x, start: $s) { id } }",
        "FORBIDDEN",
    ),
    # A's own business with B's appointment inside: it does not exist for A.
    (
        "completeAppointment(own business)",
        "mutation($a: ID!, $x: ID!) { completeAppointment(businessId: $a, appointmentId: $x) { id } }",
        "NOT_FOUND",
    ),
    (
        "markNoShow(own business)",
        "mutation($a: ID!, $x: ID!) { markNoShow(businessId: $a, appointmentId: $x) { id } }",
        "NOT_FOUND",
    ),
    (
        "cancelAppointment(own business)",
        "mutation($a: ID!, $x: ID!) { cancelAppointment(businessId: $a, appointmentId: $x) { id } }",
        "NOT_FOUND",
    ),
    (
        "confirmAppointment(own business)",
        "mutation($a: ID!, $x: ID!) { confirmAppointment(businessId: $a, appointmentId: $x) { id } }",
        "NOT_FOUND",
    ),
    (
        "rescheduleAppointment(own business)",
        "mutation($a: ID!, $x: ID!, $s: DateTime!) { rescheduleAppointment(businessId: $a, appointmentId: $x, start: $s) { id } }",
        "NOT_FOUND",
    ),
]


async def test_another_business_cannot_see_or_move_the_appointments(salon: Any) -> None:
    platform, owner, service = salon
    slot = await first_slot(platform, service)
    body = await book(platform, service, slot["startTime"], uuid.uuid4().hex, "victim")
    assert not body.get("errors"), body
    intruder = await sign_up_owner(platform, "booking-intruder")
    frm, to = window()
    ids = {
        "a": intruder["business_id"],
        "b": owner["business_id"],
        "x": body["data"]["bookAppointment"]["appointment"]["id"],
        "s": (dt.datetime.fromisoformat(slot["startTime"]) + dt.timedelta(hours=1)).isoformat(),
        "f": frm,
        "t": to,
    }
    booking_db = platform.dbs["booking"]
    before = booking_db.execute("SELECT appointment_id, status, start_time, confirmed_at FROM appointment")
    # The relay prunes published rows, so count what was ever written: the id sequence.
    outbox_before = booking_db.execute("SELECT last_value FROM outbox_id_seq")
    for name, query, code in FOREIGN_CASES:
        variables = {k: v for k, v in ids.items() if f"${k}" in query}
        declared = ", ".join(
            f"${k}: DateTime!" for k in ("f", "t") if f"${k}" in query and f"${k}:" not in query
        )
        if declared:
            query = query.replace("query($b: ID!)", f"query($b: ID!, {declared})")
        answer = await platform.gql(query, intruder["token"], **variables)
        assert answer.get("errors"), f"{name} was not refused: {answer}"
        assert answer["errors"][0]["extensions"]["code"] == code, (name, answer["errors"])
    assert (
        booking_db.execute("SELECT appointment_id, status, start_time, confirmed_at FROM appointment")
        == before
    )
    assert booking_db.execute("SELECT last_value FROM outbox_id_seq") == outbox_before
