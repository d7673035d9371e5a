"""Third-party webhooks: the SMS provider's `POST /webhooks/twilio/status` (delivery status callbacks) and
`POST /webhooks/twilio/inbound` (replies from customers), and Stripe's `POST /webhooks/stripe`.

The edge checks Twilio's `X-Twilio-Signature` over the public URL the provider posted to and the form
parameters, and refuses a bad one with 403 before anything is forwarded. notification-service, which the
request is then handed to whole (url, params, signature), verifies the signature again itself (ADR 0006).
Inbound replies are answered with TwiML: an empty `<Response/>`, or a short `<Message>` for STOP / START and
the like.

Stripe's events are checked against `Stripe-Signature` (HMAC over the raw body, timestamp within the
tolerance) and refused with 400 before anything is forwarded; billing-service then gets the raw body exactly
as received (never re-serialised: the signature covers those bytes) with the header, verifies it again and
applies the event. 200 tells Stripe the event is handled (a duplicate too); 503 when billing cannot be
reached makes Stripe deliver it again later.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from apptremind_gen.apptremind.billing import v1 as billing_pb
from apptremind_gen.apptremind.notification import v1 as notification_pb
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.logs import get_logger
from apptremind_platform.webhook_signatures import (
    StripeSignatureError,
    verify_stripe_signature,
    verify_twilio_signature,
)

from .errors import error_reason
from .settings import EdgeSettings
from .upstreams import Upstreams

NOTIFICATION_SERVICE = "apptremind.notification.v1.NotificationService"
STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
SIGNATURE_HEADER = "x-twilio-signature"
TWIML = "application/xml"
BILLING_SERVICE = "apptremind.billing.v1.BillingService"
STRIPE_PATH = "/webhooks/stripe"
STRIPE_SIGNATURE_HEADER = "stripe-signature"
# billing-service's answers that will not change on a retry: the event itself is unacceptable.
_STRIPE_REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED})

_log = get_logger("apptremind.edge.webhooks")


def public_url(request: Request, base: str) -> str:
    """The URL the provider signed: the configured public base (the edge sits behind a proxy that may
    rewrite scheme, host and port), plus the path and query actually requested."""
    url = request.url
    if not base:
        return str(url)
    query = f"?{url.query}" if url.query else ""
    return f"{base.rstrip('/')}{url.path}{query}"


async def _signed_webhook(request: Request, settings: EdgeSettings) -> notification_pb.ProviderWebhook | None:
    body = (await request.body()).decode("utf-8", errors="replace")
    params = dict(parse_qsl(body, keep_blank_values=True))
    url = public_url(request, settings.edge_public_base_url)
    signature = request.headers.get(SIGNATURE_HEADER, "")
    token = settings.edge_sms_auth_token.get_secret_value()
    if not token or not signature or not verify_twilio_signature(token, url, params, signature):
        _log.warning("webhook.bad_signature", path=request.url.path)
        return None
    return notification_pb.ProviderWebhook(url=url, params=params, signature=signature)


def _upstream_failure(err: grpc.aio.AioRpcError) -> Response:
    _log.warning("webhook.upstream_failed", grpc_code=err.code().name, details=err.details())
    if err.code() is grpc.StatusCode.PERMISSION_DENIED:
        return PlainTextResponse("invalid signature", status_code=403)
    # Anything else: the provider should try again later.
    return PlainTextResponse("unavailable", status_code=503)


def _stripe_refusal(reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=400)


def stripe_routes(settings: EdgeSettings, upstreams: Upstreams) -> list[Route]:
    async def stripe(request: Request) -> Response:
        payload = await request.body()
        header = request.headers.get(STRIPE_SIGNATURE_HEADER, "")
        secret = settings.edge_stripe_webhook_secret.get_secret_value()
        if not secret:
            # A configuration fault, not the sender's: 503 keeps Stripe retrying until it is fixed.
            _log.error("webhook.stripe_secret_missing")
            return JSONResponse({"error": "webhook_secret_not_configured"}, status_code=503)
        try:
            verify_stripe_signature(
                secret, payload, header, time.time(), settings.edge_stripe_webhook_tolerance_s
            )
        except StripeSignatureError as err:
            _log.warning("webhook.stripe_refused", reason=err.reason)
            return _stripe_refusal(err.reason)
        client = AsyncServiceClient(upstreams.channel("billing"), BILLING_SERVICE)
        try:
            handled = await client.call(
                "HandleStripeWebhook",
                billing_pb.HandleStripeWebhookRequest(payload=payload, signature=header),
                billing_pb.HandleStripeWebhookResponse,
                timeout=settings.edge_webhook_timeout_s,
            )
        except grpc.aio.AioRpcError as err:
            reason = error_reason(err)
            _log.warning(
                "webhook.stripe_upstream_failed",
                grpc_code=err.code().name,
                reason=reason,
                details=err.details(),
            )
            if err.code() in _STRIPE_REFUSED:
                return _stripe_refusal(reason or err.code().name.lower())
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse(
            {"received": True, "event_id": handled.event_id, "duplicate": handled.duplicate}, status_code=200
        )

    return [Route(STRIPE_PATH, stripe, methods=["POST"])]


def twiml(reply: str) -> str:
    if not reply:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(reply)}</Message></Response>'


def webhook_routes(settings: EdgeSettings, upstreams: Upstreams) -> list[Route]:
    def client() -> AsyncServiceClient:
        return AsyncServiceClient(upstreams.channel("notification"), NOTIFICATION_SERVICE)

    async def status(request: Request) -> Response:
        webhook = await _signed_webhook(request, settings)
        if webhook is None:
            return PlainTextResponse("invalid signature", status_code=403)
        try:
            await client().call(
                "RecordProviderStatus",
                notification_pb.RecordProviderStatusRequest(webhook=webhook),
                notification_pb.RecordProviderStatusResponse,
                timeout=settings.edge_webhook_timeout_s,
            )
        except grpc.aio.AioRpcError as err:
            return _upstream_failure(err)
        return Response(status_code=204)

    async def inbound(request: Request) -> Response:
        webhook = await _signed_webhook(request, settings)
        if webhook is None:
            return PlainTextResponse("invalid signature", status_code=403)
        try:
            handled = await client().call(
                "HandleInboundSms",
                notification_pb.HandleInboundSmsRequest(webhook=webhook),
                notification_pb.HandleInboundSmsResponse,
                timeout=settings.edge_webhook_timeout_s,
            )
        except grpc.aio.AioRpcError as err:
            return _upstream_failure(err)
        return Response(twiml(handled.reply), media_type=TWIML)

    return [
        Route(STATUS_PATH, status, methods=["POST"]),
        Route(INBOUND_PATH, inbound, methods=["POST"]),
        *stripe_routes(settings, upstreams),
    ]
