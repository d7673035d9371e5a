"""The edge's Stripe webhook: signature and timestamp checks before anything is forwarded, the raw body
forwarded byte for byte, and how billing-service's answers become HTTP statuses (200, 400, 503). The billing
upstream is a real grpc.aio server that records what it is asked; nothing is mocked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from apptremind_gen.apptremind.billing import v1 as pb
from apptremind_platform.grpc_bridge import bind_service
from apptremind_platform.interceptors import ERROR_REASON_KEY
from apptremind_platform.webhook_signatures import stripe_signature_header

from .conftest import EdgeFactory

SECRET = "whsec_edge_unit_test"
SERVICE = "apptremind.billing.v1.BillingService"
PATH = "/webhooks/stripe"
# Odd spacing, key order and a non-ASCII character: any re-serialisation would change these bytes.
BODY = '{"id":"evt_1",  "type":"checkout.session.completed" ,"data":{"object":{"name":"Café"}}}'.encode()


class RecordingBilling:
    def __init__(self) -> None:
        self.calls: list[pb.HandleStripeWebhookRequest] = []
        self.seen: set[bytes] = set()
        self.refuse: tuple[grpc.StatusCode, str] | None = None

    async def handle_stripe_webhook(
        self, request: pb.HandleStripeWebhookRequest, context: Any
    ) -> pb.HandleStripeWebhookResponse:
        self.calls.append(request)
        if self.refuse is not None:
            code, reason = self.refuse
            await context.abort(code, reason, trailing_metadata=((ERROR_REASON_KEY, reason),))
        duplicate = request.payload in self.seen
        self.seen.add(request.payload)
        return pb.HandleStripeWebhookResponse(
            event_id="evt_1",
            event_type="checkout.session.completed",
            duplicate=duplicate,
            applied=not duplicate,
        )


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, RecordingBilling]]:
    servicer = RecordingBilling()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((bind_service(servicer, SERVICE),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


def signed(body: bytes = BODY, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {"Stripe-Signature": stripe_signature_header(secret, body, timestamp)}


async def test_a_signed_event_is_forwarded_byte_for_byte_and_a_duplicate_is_also_200(
    edge: EdgeFactory, upstream: tuple[str, RecordingBilling]
) -> None:
    target, billing = upstream
    headers = signed()
    async with edge(service_targets={"billing": target}, edge_stripe_webhook_secret=SECRET) as e:
        first = await e.client.post(PATH, content=BODY, headers=headers)
        again = await e.client.post(PATH, content=BODY, headers=headers)
    assert (first.status_code, first.json()) == (
        200,
        {"received": True, "event_id": "evt_1", "duplicate": False},
    )
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert [(c.payload, c.signature) for c in billing.calls] == [(BODY, headers["Stripe-Signature"])] * 2


# Headers are built when the test runs, not at collection: a timestamp taken at collection can drift back
# inside the tolerance before a long suite reaches the test.
@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda: {}, "signature_missing"),
        (lambda: {"Stripe-Signature": "v1=abc"}, "signature_malformed"),
        (lambda: signed(secret="whsec_forged"), "signature_mismatch"),
        (lambda: signed(at=time.time() - 400), "timestamp_outside_tolerance"),
        (lambda: signed(at=time.time() + 400), "timestamp_outside_tolerance"),
    ],
)
async def test_a_bad_signature_or_timestamp_is_400_and_nothing_is_forwarded(
    edge: EdgeFactory,
    upstream: tuple[str, RecordingBilling],
    make_headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    target, billing = upstream
    headers = make_headers()
    async with edge(service_targets={"billing": target}, edge_stripe_webhook_secret=SECRET) as e:
        response = await e.client.post(PATH, content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (400, {"error": reason})
    assert billing.calls == []


async def test_a_body_changed_after_signing_is_refused(
    edge: EdgeFactory, upstream: tuple[str, RecordingBilling]
) -> None:
    target, billing = upstream
    async with edge(service_targets={"billing": target}, edge_stripe_webhook_secret=SECRET) as e:
        response = await e.client.post(PATH, content=BODY.replace(b"evt_1", b"evt_2"), headers=signed())
    assert (response.status_code, response.json()) == (400, {"error": "signature_mismatch"})
    assert billing.calls == []


async def test_without_a_configured_secret_every_event_is_refused_503(
    edge: EdgeFactory, upstream: tuple[str, RecordingBilling]
) -> None:
    target, billing = upstream
    async with edge(service_targets={"billing": target}) as e:
        response = await e.client.post(PATH, content=BODY, headers=signed())
    assert (response.status_code, response.json()) == (503, {"error": "webhook_secret_not_configured"})
    assert billing.calls == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.PERMISSION_DENIED, 400),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.INTERNAL, 503),
    ],
)
async def test_billings_refusal_is_400_and_its_failure_503(
    edge: EdgeFactory, upstream: tuple[str, RecordingBilling], code: grpc.StatusCode, status: int
) -> None:
    target, billing = upstream
    billing.refuse = (code, "some_reason")
    async with edge(service_targets={"billing": target}, edge_stripe_webhook_secret=SECRET) as e:
        response = await e.client.post(PATH, content=BODY, headers=signed())
    assert response.status_code == status
    assert response.json() == ({"error": "some_reason"} if status == 400 else {"error": "unavailable"})
    assert len(billing.calls) == 1


async def test_billing_unreachable_is_503_so_stripe_retries(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(
        service_targets={"billing": dead_target}, edge_stripe_webhook_secret=SECRET, edge_webhook_timeout_s=2
    ) as e:
        response = await e.client.post(PATH, content=BODY, headers=signed())
    assert (response.status_code, response.json()) == (503, {"error": "unavailable"})
