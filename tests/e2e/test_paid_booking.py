"""The paid booking saga through the real edge, booking-service, billing-service, Kafka and stripe-mock.

A service with a deposit is booked as HELD: the slot is taken (a second customer gets slot_taken) and the
response carries the PaymentIntent's client secret. Stripe's signed webhooks, posted to `/webhooks/stripe`,
decide the rest: the card authorised -> BOOKED (with the booked event and its reminders); declined ->
RELEASED and the slot is free again; never paid -> RELEASED when the hold lapses. Completing the booked
appointment captures the deposit at Stripe (stripe-mock), a release cancels the intent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.stripe_mock import StripeMock
from apptremind_platform.envelope import decode
from tests.e2e.conftest import Platform, platform_running
from tests.e2e.test_billing import SECRET, billing_settings, post_webhook
from tests.e2e.test_signup_and_catalog import add_staff, sign_up_owner

SLUG = "deposit-studio"
# One hold TTL for all holds: the authorised and the declined hold must NOT lapse before Stripe's webhook
# (relayed through Kafka) reaches booking, the third one must. The lapsing hold is taken first, so its wait
# overlaps the other two flows; 20 s leaves those flows (about 1 s on a loaded machine) a wide margin.
HOLD_S = 20.0
AVAILABILITY = """query($slug: String!, $service: ID!, $from: DateTime!, $to: DateTime!) {
  availability(businessSlug: $slug, serviceId: $service, from: $from, to: $to, timeZone: "Europe/Berlin") {
    startTime } }"""
BOOK = """mutation($slug: String!, $service: ID!, $start: DateTime!, $name: String!) {
  bookAppointment(input: {businessSlug: $slug, serviceId: $service, startTime: $start,
                          customer: {name: $name, email: "pay@example.com", timeZone: "Europe/Berlin"}}) {
    appointment { id status holdExpiresAt deposit { amountMinor currency } }
    selfServiceToken replayed
    payment { paymentIntentId clientSecret holdExpiresAt amount { amountMinor currency } } } }"""
MINE = "query($t: String!) { myAppointment(token: $t) { id status holdExpiresAt } }"
COMPLETE = "mutation($b: ID!, $a: ID!) { completeAppointment(businessId: $b, appointmentId: $a) { status } }"


@pytest.fixture
def stripe_mock(workdir: Path) -> Iterator[StripeMock]:
    with StripeMock(log_file=workdir / "stripe-mock-paid-booking.log") as server:
        yield server


async def set_up(platform: Platform) -> tuple[dict[str, Any], str]:
    owner = await sign_up_owner(platform, SLUG)
    token, business_id = owner["token"], owner["business_id"]
    staff = await add_staff(platform, token, business_id, "Ada")
    service = (
        await platform.ok(
            """mutation($b: ID!, $s: ID!) { createService(input: {businessId: $b, name: "Colour",
                 durationMinutes: 60, priceMinor: 8000, depositMinor: 2000, freeCancellationHours: 24,
                 staffIds: [$s]}) { id depositMinor freeCancellationHours currency } }""",
            token,
            b=business_id,
            s=staff,
        )
    )["createService"]
    assert (service["depositMinor"], service["freeCancellationHours"]) == (2000, 24)
    return owner, service["id"]


async def slots(platform: Platform, service: str) -> list[str]:
    """Bookable starts once booking's read model knows the service (NOT_FOUND until then)."""
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    variables = {
        "slug": SLUG,
        "service": service,
        "from": start.isoformat(),
        "to": (start + dt.timedelta(days=1)).isoformat(),
    }
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        body = await platform.gql(AVAILABILITY, **variables)
        found = (body.get("data") or {}).get("availability") or []
        if found:
            return [s["startTime"] for s in found]
        assert {e["extensions"]["code"] for e in body.get("errors", [])} <= {"NOT_FOUND"}, body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def book(platform: Platform, service: str, start: str, key: str, name: str) -> dict[str, Any]:
    response = await platform.client.post(
        "/graphql",
        json={"query": BOOK, "variables": {"slug": SLUG, "service": service, "start": start, "name": name}},
        headers={"idempotency-key": key},
    )
    body: dict[str, Any] = response.json()
    return body


async def hold(platform: Platform, service: str, start: str, key: str, name: str) -> dict[str, Any]:
    body = await book(platform, service, start, key, name)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["bookAppointment"]
    assert payload["appointment"]["status"] == "HELD"
    return payload


def intent_event(kind: str, business_id: str, appointment_id: str, intent_id: str, **extra: Any) -> bytes:
    obj = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 2000,
        "currency": "eur",
        "capture_method": "manual",
        "metadata": {"business_id": business_id, "appointment_id": appointment_id},
        **extra,
    }
    body = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


def topics_about(platform: Platform, service: str, appointment_id: str) -> list[str]:
    """The topics of the events a service's outbox holds about one appointment (their subject), in order."""
    rows = platform.dbs[service].execute("SELECT topic, payload FROM outbox ORDER BY id")
    return [
        topic for topic, payload in rows if decode(topic, bytes(payload)).envelope.subject == appointment_id
    ]


async def status_becomes(
    platform: Platform, token: str, status: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    data = await platform.eventually(
        MINE, "", lambda d: d["myAppointment"]["status"] == status, timeout_s=timeout_s, t=token
    )
    mine: dict[str, Any] = data["myAppointment"]
    return mine


async def settled_deposit(
    platform: Platform, appointment_id: str, status: str, timeout_s: float = 30.0
) -> tuple[Any, ...]:
    """The deposit row once it has reached `status` with nothing left to tell Stripe.

    Waiting on the status as well as on `settle_action` matters: a deposit that billing has not
    heard about yet is `pending` with no settle action, which would pass for settled.
    """
    db = platform.dbs["billing"]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = db.execute(
            "SELECT status, settle_action, reason, settle_error FROM deposit WHERE appointment_id = %s",
            (appointment_id,),
        )
        if rows and rows[0][0] == status and rows[0][1] is None:
            return tuple(rows[0])
        assert asyncio.get_running_loop().time() < deadline, rows
        await asyncio.sleep(0.1)


async def test_paid_booking_confirms_on_authorisation_releases_on_decline_and_lapse(
    postgres: PostgresServer, kafka: KafkaBroker, stripe_mock: StripeMock
) -> None:
    async with platform_running(
        postgres,
        kafka,
        services=("auth", "business", "billing", "booking"),
        billing=billing_settings(stripe_mock),
        booking_overrides={"booking_hold_ttl_s": HOLD_S, "booking_hold_sweep_interval_s": 0.2},
        edge_stripe_webhook_secret=SECRET,
        # The test polls myAppointment from one address.
        edge_public_per_ip_per_minute=10_000,
    ) as platform:
        owner, service = await set_up(platform)
        business_id, member_token = owner["business_id"], owner["token"]
        # Three starts far enough apart that one 60-minute appointment does not block the next.
        starts = await slots(platform, service)
        first, second, third = starts[0], starts[8], starts[16]

        # Held first and never paid: it lapses while the other two holds are settled below.
        lapsing = await hold(platform, service, third, "key-c", "Cy")

        # Booked as HELD, with what Stripe.js needs; a replay hands back the same intent.
        held = await book(platform, service, first, "key-a", "Ann")
        assert "errors" not in held, held
        payload = held["data"]["bookAppointment"]
        a = payload["appointment"]
        assert a["status"] == "HELD" and a["holdExpiresAt"]
        assert a["deposit"] == {"amountMinor": 2000, "currency": "EUR"}
        payment = payload["payment"]
        assert payment["paymentIntentId"].startswith("pi_") and payment["clientSecret"]
        assert payment["amount"] == {"amountMinor": 2000, "currency": "EUR"}
        replay = (await book(platform, service, first, "key-a", "Ann"))["data"]["bookAppointment"]
        assert replay["replayed"] and replay["appointment"]["id"] == a["id"]
        assert replay["payment"]["paymentIntentId"] == payment["paymentIntentId"]
        # The hold takes the slot like a booking.
        taken = await book(platform, service, first, "key-rival", "Rex")
        assert taken["errors"][0]["extensions"]["code"] == "CONFLICT"
        assert taken["errors"][0]["extensions"]["reason"] == "slot_taken"
        # No booked event and no reminders while held.
        assert topics_about(platform, "booking", a["id"]) == []

        # Stripe: the card is authorised -> BOOKED, announced like any booking.
        status, answer = await post_webhook(
            platform,
            intent_event(
                "payment_intent.amount_capturable_updated",
                business_id,
                a["id"],
                payment["paymentIntentId"],
                status="requires_capture",
                amount_capturable=2000,
            ),
        )
        assert (status, answer["duplicate"]) == (200, False)
        booked = await status_becomes(platform, payload["selfServiceToken"], "BOOKED")
        assert booked["holdExpiresAt"] is None
        announced = topics_about(platform, "booking", a["id"])
        assert announced[0] == "booking.appointment.booked.v1"
        assert "booking.reminder.requested.v1" in announced
        assert await settled_deposit(platform, a["id"], "authorized") == (
            "authorized",
            None,
            "",
            "",
        )

        # Declined -> RELEASED, the intent is cancelled at Stripe, and the slot can be booked again.
        declined = await hold(platform, service, second, "key-b", "Bea")
        b = declined["appointment"]
        status, answer = await post_webhook(
            platform,
            intent_event(
                "payment_intent.payment_failed",
                business_id,
                b["id"],
                declined["payment"]["paymentIntentId"],
                status="requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
            ),
        )
        assert (status, answer["duplicate"]) == (200, False)
        await status_becomes(platform, declined["selfServiceToken"], "RELEASED")
        assert await settled_deposit(platform, b["id"], "failed") == (
            "failed",
            None,
            "insufficient_funds",
            "",
        )
        assert topics_about(platform, "booking", b["id"]) == ["booking.deposit.settlement_requested.v1"]
        await hold(platform, service, second, "key-b2", "Ben")

        # Never paid -> released when the hold lapses; the slot is free again.
        await status_becomes(platform, lapsing["selfServiceToken"], "RELEASED", timeout_s=HOLD_S + 30)
        c_id = lapsing["appointment"]["id"]
        assert await settled_deposit(platform, c_id, "released") == (
            "released",
            None,
            "released_expired",
            "",
        )
        await hold(platform, service, third, "key-c2", "Cleo")

        # Completing the booked appointment captures the deposit (stripe-mock confirms the capture).
        done = await platform.ok(COMPLETE, member_token, b=business_id, a=a["id"])
        assert done["completeAppointment"]["status"] == "COMPLETED"
        assert await settled_deposit(platform, a["id"], "captured") == (
            "captured",
            None,
            "completed",
            "",
        )
        assert topics_about(platform, "billing", a["id"]) == [
            "billing.deposit.authorized.v1",
            "billing.deposit.captured.v1",
        ]
