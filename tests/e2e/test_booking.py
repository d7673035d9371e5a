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
from tests.e2e.test_signup_and_catalog import sign_up_owner

AVAILABILITY = """query($slug: String!, $service: ID!, $from: DateTime!, $to: DateTime!, $tz: String!) {
  availability(businessSlug: $slug, serviceId: $service, from: $from, to: $to, timeZone: $tz) {
    startTime staffId localStart } }"""
BOOK = """mutation($slug: String!, $service: ID!, $start: DateTime!, $name: String!, $email: String!) {
  bookAppointment(input: {businessSlug: $slug, serviceId: $service, startTime: $start,
                          customer: {name: $name, email: $email, timeZone: "America/New_York"}}) {
    appointment { id status startTime } selfServiceToken replayed } }"""


@pytest.fixture
async def salon(postgres: PostgresServer, kafka: KafkaBroker) -> Any:
    # 200 customers at once from one test client: lift the per-IP limit, which another test trips.
    async with platform_running(
        postgres, kafka, services=("auth", "business", "booking"), edge_public_per_ip_per_minute=1000
    ) as platform:
        owner = await sign_up_owner(platform, "booking-salon")
        token, business_id = owner["token"], owner["business_id"]
        staff = (
            await platform.ok(
                'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "Ada"}) { id } }',
                token,
                b=business_id,
            )
        )["createStaff"]["id"]
        hours = ", ".join(f'{{weekday: {d}, startTime: "08:00", endTime: "20:00"}}' for d in range(1, 8))
        await platform.ok(
            f"mutation($b: ID!, $s: ID!) {{ setWorkingHours(input: {{businessId: $b, staffId: $s, hours: [{hours}]}}) {{ staffId }} }}",
            token,
            b=business_id,
            s=staff,
        )
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


async def first_slot(platform: Platform, service: str) -> dict[str, Any]:
    """The first slot once the booking-service's read model has caught up with the catalog events
    (until then the service is unknown to it: NOT_FOUND)."""
    frm, to = window()
    variables = {"slug": "booking-salon", "service": service, "from": frm, "to": to, "tz": "America/New_York"}
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        body = await platform.gql(AVAILABILITY, **variables)
        slots = (body.get("data") or {}).get("availability") or []
        if slots:
            slot: dict[str, Any] = slots[0]
            return slot
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes <= {"NOT_FOUND"}, body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


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
    slot = await first_slot(platform, service)
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
    later = (dt.datetime.fromisoformat(slot["startTime"]) + dt.timedelta(hours=2)).isoformat()
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
        postgres, kafka, services=("auth", "business"), edge_public_per_ip_per_minute=3
    ) as platform:
        query = 'query { availability(businessSlug: "nobody", serviceId: "x", from: "2027-01-01T00:00:00Z", to: "2027-01-02T00:00:00Z", timeZone: "UTC") { localStart } }'
        codes = [(await platform.gql(query))["errors"][0]["extensions"]["code"] for _ in range(4)]
    assert codes == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "RATE_LIMITED"]
