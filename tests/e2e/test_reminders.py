"""The reminder promise end to end, through the GraphQL edge: a business sets itself up, customers book, and
each reminder reaches the real SMTP sink and the Twilio-shaped SMS server once, not before its time, worded
in the customer's language and zone — and never for an appointment that was cancelled or moved.

Path: edge → booking (outbox → relay → Kafka) → scheduler (job; due → Kafka) → streams worker (Faust)
→ booking GetReminderStatus → SMTP / SMS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.sms_server import SmsServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_platform.webhook_signatures import twilio_signature
from tests.e2e.conftest import SPECS, Platform, platform_running
from tests.e2e.test_signup_and_catalog import add_staff, sign_up_owner
from tests.fixtures.streams import StreamsWorker, running_streams

SLUG = "reminder-salon"
PUBLIC_URL = "https://edge.apptremind.test"
NEW_YORK = ZoneInfo("America/New_York")
GERMAN_DAYS = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
# How long after the last expected message the test keeps listening for ones that must not come.
QUIET_PERIOD_S = 8.0
# booking's minimum notice, plus room for the set-up: every start the test books must still be offered when
# the last booking or move is made (booking re-checks the notice then), however long the set-up took.
MIN_NOTICE = dt.timedelta(hours=2)
SET_UP_ROOM = dt.timedelta(minutes=10)

AVAILABILITY = """query($slug: String!, $service: ID!, $staff: ID, $from: DateTime!, $to: DateTime!) {
  availability(businessSlug: $slug, serviceId: $service, staffId: $staff, from: $from, to: $to,
               timeZone: "America/New_York") { startTime staffId } }"""
BOOK = """mutation($service: ID!, $staff: ID!, $start: DateTime!, $name: String!, $email: String!, $phone: String!) {
  bookAppointment(input: {businessSlug: "reminder-salon", serviceId: $service, staffId: $staff, startTime: $start,
      customer: {name: $name, email: $email, phone: $phone, timeZone: "America/New_York", locale: "de-DE"}}) {
    appointment { id startTime } selfServiceToken } }"""


@pytest.fixture
async def pipeline(
    postgres: PostgresServer, kafka: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Platform, SmtpSink, SmsServer, StreamsWorker]]:
    sms = SmsServer(port=free_port())
    with SmtpSink() as sink:
        sms.start()
        try:
            # notification-service reads its own settings (booking's address, the SMS token) from the environment.
            ports = {name: free_port() for name in SPECS}
            monkeypatch.setenv("APPTREMIND_SMS_AUTH_TOKEN", sms.auth_token)
            monkeypatch.setenv("APPTREMIND_BOOKING_TARGET", f"127.0.0.1:{ports['booking']}")
            async with platform_running(
                postgres,
                kafka,
                services=("auth", "business", "booking", "scheduler", "notification"),
                ports=ports,
                edge_public_per_ip_per_minute=1000,
                edge_sms_auth_token=sms.auth_token,
                edge_public_base_url=PUBLIC_URL,
            ) as platform:
                env = {
                    "APPTREMIND_DATABASE_URL": platform.dbs["notification"].dsn,
                    "APPTREMIND_BOOKING_TARGET": f"127.0.0.1:{platform.ports['booking']}",
                    "APPTREMIND_SMTP_HOST": "127.0.0.1",
                    "APPTREMIND_SMTP_PORT": str(sink.port),
                    "APPTREMIND_SMTP_CA_FILE": str(sink.ca_file),
                    "APPTREMIND_SMS_BASE_URL": sms.base_url,
                    "APPTREMIND_SMS_ACCOUNT_SID": sms.account_sid,
                    "APPTREMIND_SMS_AUTH_TOKEN": sms.auth_token,
                }
                async with running_streams(kafka.bootstrap_servers, env, tmp_path) as worker:
                    yield platform, sink, sms, worker
        finally:
            sms.stop()


async def set_up_salon(platform: Platform, owner: dict[str, Any]) -> tuple[str, list[str]]:
    token, business_id = owner["token"], owner["business_id"]
    # Open around the clock, so the test finds slots whatever time it runs.
    staff = [
        await add_staff(platform, token, business_id, name, "00:00", "24:00") for name in ("Ada", "Bo", "Cy")
    ]
    service = await platform.ok(
        """mutation($b: ID!, $s: [ID!]!) { createService(input: {businessId: $b, name: "Haarschnitt",
             durationMinutes: 30, priceMinor: 2500, staffIds: $s}) { id } }""",
        token,
        b=business_id,
        s=staff,
    )
    return service["createService"]["id"], staff


async def first_start(
    platform: Platform, service: str, staff: str, not_before: dt.datetime | None = None
) -> dt.datetime:
    """The earliest start offered at or after `not_before` (default: the minimum notice plus room for the
    set-up from now), once booking's read model has the catalog."""
    frm = not_before or dt.datetime.now(dt.UTC) + MIN_NOTICE + SET_UP_ROOM
    window = {"from": frm.isoformat(), "to": (frm + dt.timedelta(days=1)).isoformat()}
    for _ in range(600):
        body = await platform.gql(AVAILABILITY, slug=SLUG, service=service, staff=staff, **window)
        slots = (body.get("data") or {}).get("availability") or []
        if slots:
            return dt.datetime.fromisoformat(slots[0]["startTime"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no availability: {body}")


async def book(
    platform: Platform, service: str, staff: str, start: dt.datetime, name: str, phone: str
) -> dict[str, Any]:
    response = await platform.client.post(
        "/graphql",
        json={
            "query": BOOK,
            "variables": {
                "service": service,
                "staff": staff,
                "start": start.isoformat(),
                "name": name,
                "email": f"{name.lower()}@example.com",
                "phone": phone,
            },
        },
        headers={"idempotency-key": f"{name}-{start.isoformat()}"},
    )
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body
    booked: dict[str, Any] = body["data"]["bookAppointment"]
    return booked


async def test_reminders_arrive_once_on_time_and_never_for_cancelled_or_moved_appointments(
    pipeline: tuple[Platform, SmtpSink, SmsServer, StreamsWorker],
) -> None:
    platform, sink, sms, worker = pipeline
    owner = await sign_up_owner(platform, SLUG)
    service, (ada, bo, cy) = await set_up_salon(platform, owner)
    soon = await first_start(platform, service, ada)  # >= 2 h ahead (the minimum notice) + room
    # An offered start 3 h or more after `soon` (not `soon + 3 h` itself: on a DST fall-back day the repeated
    # hour's second pass offers no starts).
    later = await first_start(platform, service, bo, not_before=soon + dt.timedelta(hours=3))

    # Shrink the reminder offset so that a reminder for `soon` falls due about half a minute from now.
    offset_min = math.floor(((soon - dt.datetime.now(dt.UTC)).total_seconds() - 30) / 60)
    remind_soon = soon - dt.timedelta(minutes=offset_min)
    await platform.ok(
        "mutation($b: ID!, $o: Int!) { updateReminderPolicy(input: {businessId: $b, offsetsMinutes: [$o], channels: [EMAIL, SMS]}) { offsetsMinutes } }",
        owner["token"],
        b=owner["business_id"],
        o=offset_min,
    )
    booking_db = platform.dbs["booking"]
    # booking's read model takes the policy from business events: bookings made before it arrives would get
    # the old offsets, so wait for it (and fail here rather than later if it never comes).
    policy_deadline = asyncio.get_running_loop().time() + 60
    while not booking_db.execute(
        "SELECT 1 FROM reminder_policy WHERE business_id = %s AND offsets_minutes = %s::integer[]",
        (owner["business_id"], [offset_min]),
    ):
        assert asyncio.get_running_loop().time() < policy_deadline, "booking never got the reminder policy"
        await asyncio.sleep(0.1)

    anna = await book(platform, service, ada, soon, "Anna", "+12125550101")  # reminded
    ben = await book(platform, service, bo, soon, "Ben", "+12125550102")  # cancelled: never reminded
    cleo = await book(platform, service, cy, soon, "Cleo", "+12125550103")  # moved away: not reminded now
    dora = await book(platform, service, bo, later, "Dora", "+12125550104")  # moved to `soon`: reminded
    await platform.ok(
        "mutation($t: String!) { cancelAppointment(token: $t) { status } }", t=ben["selfServiceToken"]
    )
    await platform.ok(
        "mutation($t: String!, $s: DateTime!) { rescheduleAppointment(token: $t, start: $s) { id } }",
        t=cleo["selfServiceToken"],
        s=later.isoformat(),
    )
    await platform.ok(
        "mutation($t: String!, $s: DateTime!) { rescheduleAppointment(token: $t, start: $s) { id } }",
        t=dora["selfServiceToken"],
        s=soon.isoformat(),
    )
    assert dt.datetime.now(dt.UTC) < remind_soon, "the set-up took longer than the reminder lead time"

    expected_mail = {"anna@example.com", "dora@example.com"}
    expected_sms = {"+12125550101", "+12125550104"}
    deadline = asyncio.get_running_loop().time() + 180
    while not (
        expected_mail <= {to for m in reminder_mails(sink) for to in m.envelope_to}
        and expected_sms <= {m.to for m in sms.messages()}
    ):
        assert worker.process.returncode is None, worker.log_tail()
        assert asyncio.get_running_loop().time() < deadline, (
            [m.envelope_to for m in sink.messages()],
            [m.to for m in sms.messages()],
            worker.log_tail(),
        )
        await asyncio.sleep(0.2)
    await asyncio.sleep(QUIET_PERIOD_S)  # anything that must not arrive has had its chance

    mails = reminder_mails(sink)
    assert sorted(to for m in mails for to in m.envelope_to) == sorted(expected_mail)  # once each
    assert sorted(m.to for m in sms.messages()) == sorted(expected_sms)
    for m in mails:
        assert m.received_at >= remind_soon, (m.received_at, remind_soon)  # never early
    for s in sms.messages():
        assert s.date_created >= remind_soon, (s.date_created, remind_soon)

    # Worded for a German-speaking customer in New York, at the appointment's current time.
    local = soon.astimezone(NEW_YORK)
    for m in mails:
        text = m.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert GERMAN_DAYS[local.weekday()] in text, text
        assert local.strftime("%H:%M") in text, text
        [invite] = [p for p in m.message.iter_attachments() if p.get_content_type() == "text/calendar"]
        assert soon.strftime("DTSTART:%Y%m%dT%H%M%SZ") in invite.get_content()
    for s in sms.messages():
        assert local.strftime("%H:%M") in s.body, s.body

    # The moved appointment's new reminders wait in the scheduler for their time; the old ones are cancelled.
    cleo_id = cleo["appointment"]["id"]
    jobs = platform.dbs["scheduler"].execute(
        "SELECT idempotency_key, state, due_at FROM job WHERE idempotency_key LIKE %s ORDER BY 1",
        (f"{cleo_id}|%",),
    )
    remind_later = (later - dt.timedelta(minutes=offset_min)).strftime("%Y-%m-%dT%H:%M:%SZ")
    states = {(key.split("|")[1], key.split("|")[2]): state for key, state, _ in jobs}
    assert states == {
        (remind_soon.strftime("%Y-%m-%dT%H:%M:%SZ"), "email"): "cancelled",
        (remind_soon.strftime("%Y-%m-%dT%H:%M:%SZ"), "sms"): "cancelled",
        (remind_later, "email"): "scheduled",
        (remind_later, "sms"): "scheduled",
    }
    # And the delivery log says what happened to Anna's reminders. The worker commits 'sent' only after the
    # provider accepted the message, so a message can be at the sink while its row still says 'sending'.
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        sent = platform.dbs["notification"].execute(
            "SELECT channel, status FROM delivery WHERE appointment_id = %s AND kind = 'reminder' ORDER BY channel",
            (anna["appointment"]["id"],),
        )
        recorded = len(sent) == 2 and {row[1] for row in sent} <= {"sent", "delivered"}
        if recorded or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [row[0] for row in sent] == ["email", "sms"]
    assert {row[1] for row in sent} <= {"sent", "delivered"}

    # Replies to the reminder SMS, signed as the provider signs them: C confirms, X cancels, STOP opts out.
    assert await reply(platform, sms, "+12125550101", "C") == 200
    assert await reply(platform, sms, "+12125550104", "x") == 200
    assert await reply(platform, sms, "+12125550101", "STOP") == 200
    assert await reply(platform, sms, "+12125550104", "X", forged=True) == 403
    rows = booking_db.execute(
        "SELECT appointment_id::text, status, confirmed_at IS NOT NULL FROM appointment WHERE appointment_id = ANY(%s::uuid[])",
        ([anna["appointment"]["id"], dora["appointment"]["id"]],),
    )
    assert sorted(rows) == sorted(
        [(anna["appointment"]["id"], "booked", True), (dora["appointment"]["id"], "cancelled", False)]
    )
    assert platform.dbs["notification"].execute(
        "SELECT count(*) FROM sms_stop WHERE address = %s", ("+12125550101",)
    ) == [(1,)]


async def reply(platform: Platform, sms: SmsServer, phone: str, body: str, *, forged: bool = False) -> int:
    params = {
        "MessageSid": f"SM{phone[-4:]}{body}",
        "AccountSid": sms.account_sid,
        "From": phone,
        "To": "+15005550006",
        "Body": body,
    }
    signature = twilio_signature(
        "not the token" if forged else sms.auth_token, f"{PUBLIC_URL}/webhooks/twilio/inbound", params
    )
    response = await platform.client.post(
        "/webhooks/twilio/inbound", data=params, headers={"x-twilio-signature": signature}
    )
    return response.status_code


def reminder_mails(sink: SmtpSink) -> list[Any]:
    """Reminder e-mails only: every booking also sends a confirmation, which is not under test here."""
    return [m for m in sink.messages() if m.subject.startswith("Erinnerung:")]
