"""The SMS provider's webhooks end to end: the Twilio-shaped SMS server posts signed requests to the real
edge (over HTTP), which verifies them and forwards them to the real notification-service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from apptremind_devstack.ports import free_port
from apptremind_edge.app import create_app
from apptremind_edge.settings import EdgeSettings
from apptremind_notification.channels.sms import TwilioProvider
from apptremind_notification.dispatch import Dispatcher
from apptremind_platform.webhook_signatures import twilio_signature
from tests.integration.notification.conftest import Notification
from tests.integration.notification.support import SMS_TOKEN, eventually, job_of, reminder


@contextmanager
def serving_edge(notification_port: int) -> Iterator[str]:
    settings = EdgeSettings(
        edge_port=0,
        service_targets={"notification": f"127.0.0.1:{notification_port}"},
        edge_sms_auth_token=SMS_TOKEN,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="edge", daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the edge did not start"
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def stops(h: Notification, number: str) -> int:
    [(n,)] = h.db.execute("SELECT count(*) FROM sms_stop WHERE address = %s", (number,))
    assert isinstance(n, int)
    return n


async def test_forged_webhooks_are_refused_and_change_nothing(harness: Notification) -> None:
    r = reminder(harness.booking, channel="sms")
    with serving_edge(harness.runtime.port) as edge:
        url = f"{edge}/webhooks/twilio/inbound"
        params = {"From": r.recipient, "To": "+15005550006", "Body": "STOP", "MessageSid": "SM1"}
        async with httpx.AsyncClient() as client:
            forged = await client.post(
                url,
                data=params,
                headers={"X-Twilio-Signature": twilio_signature("not-our-token", url, params)},
            )
            unsigned = await client.post(url, data=params)
            # Signed for another URL: a replay of a real request against a different endpoint.
            elsewhere = await client.post(
                url,
                data=params,
                headers={
                    "X-Twilio-Signature": twilio_signature(
                        SMS_TOKEN, f"{edge}/webhooks/twilio/status", params
                    )
                },
            )
            tampered_params = {**params, "Body": "START"}
            tampered = await client.post(
                url,
                data=tampered_params,
                headers={"X-Twilio-Signature": twilio_signature(SMS_TOKEN, url, params)},
            )
    assert [x.status_code for x in (forged, unsigned, elsewhere, tampered)] == [403, 403, 403, 403]
    assert stops(harness, r.recipient) == 0
    assert (await harness.dispatcher.dispatch(job_of(r))).status == "sent"


async def test_stop_by_sms_then_reminders_to_that_number_are_skipped(harness: Notification) -> None:
    r = reminder(harness.booking, channel="sms")
    with serving_edge(harness.runtime.port) as edge:
        answer = await harness.sms.inject_inbound(
            r.recipient, "+15005550006", "Stop", f"{edge}/webhooks/twilio/inbound"
        )
        assert answer.status_code == 200
        assert stops(harness, r.recipient) == 1
        assert (await harness.dispatcher.dispatch(job_of(r))).reason == "opted_out"
        assert harness.delivery(r.business_id, r.key)[:2] == ("skipped", "opted_out")
        assert [m for m in harness.sms.messages() if m.to == r.recipient] == []
        async with httpx.AsyncClient() as client:
            params = {"From": r.recipient, "To": "+15005550006", "Body": "START", "MessageSid": "SM2"}
            url = f"{edge}/webhooks/twilio/inbound"
            reply = await client.post(
                url, data=params, headers={"X-Twilio-Signature": twilio_signature(SMS_TOKEN, url, params)}
            )
        assert reply.headers["content-type"].startswith("application/xml")
        assert reply.text.endswith(
            "<Response><Message>You will receive messages again. Reply STOP to opt out.</Message></Response>"
        )
    assert stops(harness, r.recipient) == 0


async def test_status_callbacks_through_the_edge_mark_the_sms_delivered(harness: Notification) -> None:
    r = reminder(harness.booking, channel="sms")
    assert harness.runtime.pool is not None
    with serving_edge(harness.runtime.port) as edge:
        provider = TwilioProvider(
            "sms",
            harness.sms.base_url,
            harness.sms.account_sid,
            SMS_TOKEN,
            "+15005550006",
            status_callback_url=f"{edge}/webhooks/twilio/status",
        )
        try:
            dispatcher = Dispatcher(
                harness.runtime.pool, {"sms": provider}, harness.booking_client, harness.clock
            )
            assert (await dispatcher.dispatch(job_of(r))).status == "sent"

            def callbacks() -> list[int | None]:
                return [c.status_code for c in harness.sms.callbacks() if r.recipient == c.params.get("To")]

            # The SMS server posts the callbacks after its 201 and records each one only once the edge has
            # answered it, which is after notification committed "delivered": wait for both.
            await eventually(
                lambda: harness.delivery(r.business_id, r.key)[0] == "delivered" and len(callbacks()) >= 2,
                what="the delivered status and both callbacks' answers",
            )
        finally:
            await provider.aclose()
    assert harness.delivery(r.business_id, r.key)[0] == "delivered"
    assert callbacks() == [204, 204]
