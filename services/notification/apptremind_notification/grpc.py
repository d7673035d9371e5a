"""The notification-service's gRPC servicer (apptremind.notification.v1.NotificationService).

Thin on purpose: authorise, convert, run the use case in one unit of work, convert back. Business RPCs
need a member (reads) or a manager (changes); the two provider webhooks are authorised by the provider's
signature instead, which the service verifies itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.common import v1 as common_pb
from apptremind_gen.apptremind.notification import v1 as pb
from apptremind_platform import validation
from apptremind_platform.clock import Clock
from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.identity import current_caller

from . import provider_webhooks, repository, service
from .booking_client import Booking
from .dispatch import CHANNEL_FROM_PB, CHANNEL_TO_PB

SERVICE = "apptremind.notification.v1.NotificationService"

Context = Any  # grpc.aio.ServicerContext; unused, the interceptor maps errors to statuses

_KIND_TO_PB = {"reminder": pb.TemplateKind.REMINDER, "confirmation": pb.TemplateKind.CONFIRMATION}
_KIND_FROM_PB = {int(v): k for k, v in _KIND_TO_PB.items()}
_STATUS_TO_PB = {
    "queued": pb.DeliveryStatus.QUEUED,
    "sending": pb.DeliveryStatus.SENDING,
    "sent": pb.DeliveryStatus.SENT,
    "delivered": pb.DeliveryStatus.DELIVERED,
    "failed": pb.DeliveryStatus.FAILED,
    "skipped": pb.DeliveryStatus.SKIPPED,
}


def _member(business_id: str) -> uuid.UUID:
    # Authorise before parsing: an outsider learns nothing from the shape of the ids it sends.
    current_caller.get().require_role(business_id)
    return service.parse_id(business_id, "business_id")


def _manager(business_id: str) -> uuid.UUID:
    current_caller.get().require_manager(business_id)
    return service.parse_id(business_id, "business_id")


def _kind(value: pb.TemplateKind) -> str:
    return _KIND_FROM_PB.get(int(value), "")


def _channel(value: common_pb.Channel) -> str:
    return CHANNEL_FROM_PB.get(int(value), "")


def template(t: repository.TemplateRow) -> pb.Template:
    return pb.Template(
        template_id=str(t.template_id),
        business_id=str(t.business_id),
        kind=_KIND_TO_PB[t.kind],
        channel=CHANNEL_TO_PB[t.channel],
        locale=t.locale,
        subject=t.subject,
        body=t.body,
        updated_at=t.updated_at,
    )


def delivery(d: repository.DeliveryRow) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=str(d.delivery_id),
        business_id=str(d.business_id),
        appointment_id=str(d.appointment_id),
        channel=CHANNEL_TO_PB[d.channel],
        recipient=d.recipient,
        status=_STATUS_TO_PB[d.status],
        provider=d.provider,
        updated_at=d.updated_at,
        kind=_KIND_TO_PB[d.kind],
        skip_reason=d.skip_reason,
        provider_message_id=d.provider_message_id,
        attempts=d.attempts,
        last_error=d.last_error,
        created_at=d.created_at,
    )


def opt_out(o: repository.OptOutRow) -> pb.OptOut:
    return pb.OptOut(
        business_id=str(o.business_id),
        channel=CHANNEL_TO_PB[o.channel],
        address=o.address,
        reason=o.reason,
        created_at=o.created_at,
    )


def _webhook(value: pb.ProviderWebhook | None) -> provider_webhooks.Webhook:
    if value is None or not value.url:
        raise InvalidArgument(
            "missing_webhook", "the provider's request (url, params, signature) is required"
        )
    return provider_webhooks.Webhook(value.url, dict(value.params), value.signature)


class NotificationServiceServicer:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        booking: Booking,
        clock: Clock,
        sms_auth_tokens: tuple[str, ...],
        reply_window: dt.timedelta,
    ) -> None:
        self._pool = pool
        self._booking = booking
        self._clock = clock
        self._tokens = sms_auth_tokens
        self._reply_window = reply_window

    async def list_deliveries(
        self, request: pb.ListDeliveriesRequest, context: Context
    ) -> pb.ListDeliveriesResponse:
        bid = _member(request.business_id)
        page = request.page or common_pb.PageRequest()
        async with unit_of_work(self._pool) as conn:
            found = await service.list_deliveries(
                conn, bid, request.appointment_id, page.page_size, page.page_token
            )
        return pb.ListDeliveriesResponse(
            deliveries=[delivery(d) for d in found.items],
            page=common_pb.PageResponse(next_page_token=found.next_page_token),
        )

    async def create_template(
        self, request: pb.CreateTemplateRequest, context: Context
    ) -> pb.CreateTemplateResponse:
        bid = _manager(request.business_id)
        value = service.TemplateInput(
            _kind(request.kind), _channel(request.channel), request.locale, request.subject, request.body
        )
        async with unit_of_work(self._pool) as conn:
            row = await service.create_template(conn, bid, value)
        return pb.CreateTemplateResponse(template=template(row))

    async def update_template(
        self, request: pb.UpdateTemplateRequest, context: Context
    ) -> pb.UpdateTemplateResponse:
        bid = _manager(request.business_id)
        async with unit_of_work(self._pool) as conn:
            row = await service.update_template(conn, bid, request.template_id, request.subject, request.body)
        return pb.UpdateTemplateResponse(template=template(row))

    async def list_templates(
        self, request: pb.ListTemplatesRequest, context: Context
    ) -> pb.ListTemplatesResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            rows = await repository.list_templates(conn, bid)
        return pb.ListTemplatesResponse(templates=[template(t) for t in rows])

    async def preview_template(
        self, request: pb.PreviewTemplateRequest, context: Context
    ) -> pb.PreviewTemplateResponse:
        bid = _member(request.business_id)
        if request.template_id:
            async with unit_of_work(self._pool) as conn:
                row = await service.stored_template(conn, bid, request.template_id)
            channel_name, locale, subject, body = row.channel, row.locale, row.subject, row.body
        else:
            service.kind(_kind(request.kind))
            channel_name = service.channel(_channel(request.channel))
            locale = validation.locale(request.locale.strip() or "en")
            subject, body = request.subject, request.body
            if not body.strip():
                raise InvalidArgument("missing_body", "body is required")
        rendered = service.preview(channel_name, locale, subject, body, dict(request.data))
        return pb.PreviewTemplateResponse(
            subject=rendered.subject, text=rendered.text, html=rendered.html or ""
        )

    async def set_opt_out(self, request: pb.SetOptOutRequest, context: Context) -> pb.SetOptOutResponse:
        bid = _manager(request.business_id)
        async with unit_of_work(self._pool) as conn:
            row = await service.set_opt_out(
                conn, bid, _channel(request.channel), request.address, request.reason
            )
        return pb.SetOptOutResponse(opt_out=opt_out(row))

    async def remove_opt_out(
        self, request: pb.RemoveOptOutRequest, context: Context
    ) -> pb.RemoveOptOutResponse:
        bid = _manager(request.business_id)
        async with unit_of_work(self._pool) as conn:
            removed = await service.remove_opt_out(conn, bid, _channel(request.channel), request.address)
        return pb.RemoveOptOutResponse(removed=removed)

    async def list_opt_outs(self, request: pb.ListOptOutsRequest, context: Context) -> pb.ListOptOutsResponse:
        bid = _member(request.business_id)
        page = request.page or common_pb.PageRequest()
        async with unit_of_work(self._pool) as conn:
            found = await service.list_opt_outs(conn, bid, page.page_size, page.page_token)
        return pb.ListOptOutsResponse(
            opt_outs=[opt_out(o) for o in found.items],
            page=common_pb.PageResponse(next_page_token=found.next_page_token),
        )

    async def record_provider_status(
        self, request: pb.RecordProviderStatusRequest, context: Context
    ) -> pb.RecordProviderStatusResponse:
        webhook = _webhook(request.webhook)
        provider_webhooks.verify(webhook, self._tokens, "status")
        result = await provider_webhooks.record_status(self._pool, webhook, self._clock)
        return pb.RecordProviderStatusResponse(
            matched=result.matched,
            status=_STATUS_TO_PB.get(result.status, pb.DeliveryStatus.UNSPECIFIED),
        )

    async def handle_inbound_sms(
        self, request: pb.HandleInboundSmsRequest, context: Context
    ) -> pb.HandleInboundSmsResponse:
        webhook = _webhook(request.webhook)
        provider_webhooks.verify(webhook, self._tokens, "inbound")
        result = await provider_webhooks.handle_inbound(
            self._pool, self._booking, webhook, self._clock, self._reply_window
        )
        return pb.HandleInboundSmsResponse(action=result.action, reply=result.reply)
