"""The edge's SMS provider webhooks: signature checks before anything is forwarded, what is forwarded, TwiML
answers and upstream failures. The notification upstream is a real grpc.aio server that records what it
is asked; nothing is mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from apptremind_gen.apptremind.notification import v1 as pb
from apptremind_platform.grpc_bridge import bind_service
from apptremind_platform.webhook_signatures import twilio_signature

from .conftest import EdgeFactory

TOKEN = "edge-test-auth-token"
PUBLIC = "https://hooks.apptremind.test"
SERVICE = "apptremind.notification.v1.NotificationService"


class RecordingNotification:
    def __init__(self) -> None:
        self.calls: list[tuple[str, pb.ProviderWebhook]] = []
        self.reply = ""
        self.refuse = False

    async def record_provider_status(
        self, request: pb.RecordProviderStatusRequest, context: Any
    ) -> pb.RecordProviderStatusResponse:
        assert request.webhook is not None
        self.calls.append(("status", request.webhook))
        if self.refuse:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "invalid_signature")
        return pb.RecordProviderStatusResponse(matched=True, status=pb.DeliveryStatus.DELIVERED)

    async def handle_inbound_sms(
        self, request: pb.HandleInboundSmsRequest, context: Any
    ) -> pb.HandleInboundSmsResponse:
        assert request.webhook is not None
        self.calls.append(("inbound", request.webhook))
        return pb.HandleInboundSmsResponse(action="opted_out", reply=self.reply)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, RecordingNotification]]:
    servicer = RecordingNotification()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((bind_service(servicer, SERVICE),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


def signed(path: str, params: dict[str, str], token: str = TOKEN, base: str = PUBLIC) -> dict[str, str]:
    return {"X-Twilio-Signature": twilio_signature(token, base + path, params)}


STATUS = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+4915112345678", "AccountSid": "AC1"}
INBOUND = {"MessageSid": "SM9", "From": "+4915112345678", "To": "+15005550006", "Body": "STOP"}


async def test_a_signed_status_callback_is_forwarded_whole(
    edge: EdgeFactory, upstream: tuple[str, RecordingNotification]
) -> None:
    target, servicer = upstream
    path = "/webhooks/twilio/status?delivery=abc"
    async with edge(
        service_targets={"notification": target}, edge_sms_auth_token=TOKEN, edge_public_base_url=PUBLIC
    ) as e:
        response = await e.client.post(path, data=STATUS, headers=signed(path, STATUS))
    assert response.status_code == 204
    [(kind, webhook)] = servicer.calls
    assert (kind, webhook.url, dict(webhook.params)) == ("status", PUBLIC + path, STATUS)
    assert webhook.signature == signed(path, STATUS)["X-Twilio-Signature"]


async def test_bad_signatures_get_403_and_nothing_is_forwarded(
    edge: EdgeFactory, upstream: tuple[str, RecordingNotification]
) -> None:
    target, servicer = upstream
    path = "/webhooks/twilio/inbound"
    async with edge(
        service_targets={"notification": target}, edge_sms_auth_token=TOKEN, edge_public_base_url=PUBLIC
    ) as e:
        answers = [
            await e.client.post(path, data=INBOUND, headers=signed(path, INBOUND, token="other-token")),
            await e.client.post(path, data=INBOUND),
            await e.client.post(path, data={**INBOUND, "Body": "START"}, headers=signed(path, INBOUND)),
            # Signed for the URL the edge sees, not the public one the provider posts to.
            await e.client.post(path, data=INBOUND, headers=signed(path, INBOUND, base="http://edge")),
        ]
    assert [a.status_code for a in answers] == [403] * 4
    assert servicer.calls == []


async def test_without_a_configured_token_every_webhook_is_refused(
    edge: EdgeFactory, upstream: tuple[str, RecordingNotification]
) -> None:
    target, servicer = upstream
    path = "/webhooks/twilio/status"
    async with edge(service_targets={"notification": target}, edge_public_base_url=PUBLIC) as e:
        response = await e.client.post(path, data=STATUS, headers=signed(path, STATUS, token=""))
    assert response.status_code == 403
    assert servicer.calls == []


async def test_inbound_replies_are_answered_in_twiml(
    edge: EdgeFactory, upstream: tuple[str, RecordingNotification]
) -> None:
    target, servicer = upstream
    path = "/webhooks/twilio/inbound"
    async with edge(
        service_targets={"notification": target}, edge_sms_auth_token=TOKEN, edge_public_base_url=PUBLIC
    ) as e:
        silent = await e.client.post(path, data=INBOUND, headers=signed(path, INBOUND))
        servicer.reply = "Bye <now> & thanks"
        worded = await e.client.post(path, data=INBOUND, headers=signed(path, INBOUND))
    assert silent.headers["content-type"].startswith("application/xml")
    assert silent.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert worded.text.endswith("<Response><Message>Bye &lt;now&gt; &amp; thanks</Message></Response>")
    assert [kind for kind, _ in servicer.calls] == ["inbound", "inbound"]


async def test_upstream_refusal_and_outage(
    edge: EdgeFactory, upstream: tuple[str, RecordingNotification], dead_target: str
) -> None:
    target, servicer = upstream
    servicer.refuse = True
    path = "/webhooks/twilio/status"
    async with edge(
        service_targets={"notification": target}, edge_sms_auth_token=TOKEN, edge_public_base_url=PUBLIC
    ) as e:
        refused = await e.client.post(path, data=STATUS, headers=signed(path, STATUS))
    async with edge(
        service_targets={"notification": dead_target},
        edge_sms_auth_token=TOKEN,
        edge_public_base_url=PUBLIC,
        edge_webhook_timeout_s=2,
    ) as e:
        down = await e.client.post(path, data=STATUS, headers=signed(path, STATUS))
    assert (refused.status_code, down.status_code) == (403, 503)
