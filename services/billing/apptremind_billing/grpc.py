"""The billing-service's gRPC servicer (apptremind.billing.v1.BillingService).

Thin on purpose: authorise, validate, run the use case in one unit of work, convert back. ListPlans is
public; HandleStripeWebhook is authenticated by Stripe's signature; reads need a member of the business,
checkout, portal and cancellation a manager (owner or admin).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.billing import v1 as pb
from apptremind_platform.clock import Clock
from apptremind_platform.db import unit_of_work
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.identity import current_caller

from . import convert, deposits, plans, service, subscriptions, usage, webhooks
from .settings import BillingSettings
from .stripe_gateway import StripeGateway
from .usage import Reservation

SERVICE = "apptremind.billing.v1.BillingService"

Context = Any  # grpc.aio.ServicerContext; unused, the interceptor maps errors to statuses


def _member(business_id: str) -> uuid.UUID:
    # Authorise before parsing: an outsider learns nothing from the shape of the ids it sends.
    current_caller.get().require_role(business_id)
    return service.parse_id(business_id, "business_id")


# Services that meter usage on their own (no user is involved when a reminder goes out).
METERING_SERVICES = ("notification",)


def _member_or_metering_service(business_id: str) -> uuid.UUID:
    """A member of the business, or a service that sends on the business's behalf (ADR 0013)."""
    caller = current_caller.get()
    if caller.service:
        caller.require_service(*METERING_SERVICES)
    else:
        caller.require_role(business_id)
    return service.parse_id(business_id, "business_id")


def _manager(business_id: str) -> uuid.UUID:
    current_caller.get().require_manager(business_id)
    return service.parse_id(business_id, "business_id")


def _meter(value: str) -> str:
    if value not in plans.METERS:
        raise InvalidArgument("invalid_meter", f"meter must be one of {sorted(plans.METERS)}")
    return value


def _reservation(r: Reservation) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=str(r.reservation_id),
        business_id=str(r.business_id),
        meter=r.meter,
        quantity=r.quantity,
        status=convert.RESERVATION_STATUS[r.status],
        expires_at=r.expires_at,
    )


class BillingServiceServicer:
    def __init__(
        self, pool: AsyncConnectionPool, clock: Clock, settings: BillingSettings, gateway: StripeGateway
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._gateway = gateway
        prices = settings.price_ids()
        self._prices = prices
        self._policy = webhooks.Policy(
            price_to_plan={price: plan for plan, price in prices.items()},
            grace=dt.timedelta(seconds=settings.billing_grace_period_s),
        )

    async def list_plans(self, request: pb.ListPlansRequest, context: Context) -> pb.ListPlansResponse:
        async with unit_of_work(self._pool) as conn:
            found = await plans.list_plans(conn)
        return pb.ListPlansResponse(
            plans=[
                pb.Plan(
                    plan_id=p.plan_id,
                    name=p.name,
                    price_minor=p.price_minor,
                    currency=p.currency,
                    entitlements=p.entitlements,
                    rank=p.rank,
                )
                for p in found
            ]
        )

    async def get_subscription(
        self, request: pb.GetSubscriptionRequest, context: Context
    ) -> pb.GetSubscriptionResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            state = await subscriptions.get(conn, bid)
            limits = await plans.entitlements(conn, state.plan_id)
        return pb.GetSubscriptionResponse(subscription=convert.subscription(state, limits))

    async def check_entitlement(
        self, request: pb.CheckEntitlementRequest, context: Context
    ) -> pb.CheckEntitlementResponse:
        bid = _member(request.business_id)
        if request.feature not in plans.FEATURES:
            raise InvalidArgument("invalid_feature", f"feature must be one of {list(plans.FEATURES)}")
        if request.in_use < 0:
            raise InvalidArgument("invalid_in_use", "in_use must not be negative")
        metered = {entitlement: meter for meter, entitlement in plans.METERS.items()}
        async with unit_of_work(self._pool) as conn:
            state = await subscriptions.get(conn, bid)
            limit = (await plans.entitlements(conn, state.plan_id)).get(request.feature, 0)
            if request.feature in metered:
                [meter] = await usage.current(conn, bid, [metered[request.feature]], self._clock.now())
                used = meter.used + meter.reserved
            else:
                used = request.in_use
        allowed = limit == plans.UNLIMITED or used < limit
        return pb.CheckEntitlementResponse(allowed=allowed, limit=limit, used=used, plan=state.plan_id)

    async def get_usage(self, request: pb.GetUsageRequest, context: Context) -> pb.GetUsageResponse:
        bid = _member(request.business_id)
        meters = [_meter(request.meter)] if request.meter else sorted(plans.METERS)
        async with unit_of_work(self._pool) as conn:
            found = await usage.current(conn, bid, meters, self._clock.now())
        return pb.GetUsageResponse(
            usage=[
                pb.Usage(
                    meter=u.meter,
                    period_start=u.period_start,
                    period_end=u.period_end,
                    limit=u.limit,
                    used=u.used,
                    reserved=u.reserved,
                )
                for u in found
            ]
        )

    async def reserve_usage(
        self, request: pb.ReserveUsageRequest, context: Context
    ) -> pb.ReserveUsageResponse:
        bid = _member_or_metering_service(request.business_id)
        meter = _meter(request.meter)
        if not 0 < request.quantity <= usage.MAX_QUANTITY:
            raise InvalidArgument("invalid_quantity", f"quantity must be between 1 and {usage.MAX_QUANTITY}")
        reservation_id = service.parse_id(request.reservation_id, "reservation_id")
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else usage.DEFAULT_TTL
        if not dt.timedelta(0) < ttl <= usage.MAX_TTL:
            raise InvalidArgument("invalid_ttl", "ttl_seconds must be between 1 and 86400")
        async with unit_of_work(self._pool) as conn:
            reserved = await usage.reserve(
                conn, bid, meter, request.quantity, reservation_id, ttl, self._clock.now()
            )
        return pb.ReserveUsageResponse(
            reservation=_reservation(reserved.reservation), replayed=reserved.replayed
        )

    async def commit_usage(self, request: pb.CommitUsageRequest, context: Context) -> pb.CommitUsageResponse:
        bid = _member_or_metering_service(request.business_id)
        rid = service.parse_id(request.reservation_id, "reservation_id")
        async with unit_of_work(self._pool) as conn:
            done = await usage.commit(conn, bid, rid, self._clock.now())
        return pb.CommitUsageResponse(reservation=_reservation(done))

    async def release_usage(
        self, request: pb.ReleaseUsageRequest, context: Context
    ) -> pb.ReleaseUsageResponse:
        bid = _member_or_metering_service(request.business_id)
        rid = service.parse_id(request.reservation_id, "reservation_id")
        async with unit_of_work(self._pool) as conn:
            done = await usage.release(conn, bid, rid, self._clock.now())
        return pb.ReleaseUsageResponse(reservation=_reservation(done))

    async def start_checkout(
        self, request: pb.StartCheckoutRequest, context: Context
    ) -> pb.StartCheckoutResponse:
        bid = _manager(request.business_id)
        default = self._settings.billing_return_url
        success = service.return_url(request.success_url, default, "success_url")
        cancel = service.return_url(request.cancel_url, default, "cancel_url")
        session = await service.start_checkout(
            self._pool, self._gateway, self._prices, bid, request.plan, success, cancel
        )
        return pb.StartCheckoutResponse(checkout_url=session.url, checkout_session_id=session.session_id)

    async def get_portal_url(
        self, request: pb.GetPortalUrlRequest, context: Context
    ) -> pb.GetPortalUrlResponse:
        bid = _manager(request.business_id)
        url = service.return_url(request.return_url, self._settings.billing_return_url, "return_url")
        return pb.GetPortalUrlResponse(url=await service.portal_url(self._pool, self._gateway, bid, url))

    async def cancel_subscription(
        self, request: pb.CancelSubscriptionRequest, context: Context
    ) -> pb.CancelSubscriptionResponse:
        bid = _manager(request.business_id)
        state = await service.cancel(self._pool, self._gateway, bid, request.at_period_end, self._clock.now())
        async with unit_of_work(self._pool) as conn:
            limits = await plans.entitlements(conn, state.plan_id)
        return pb.CancelSubscriptionResponse(subscription=convert.subscription(state, limits))

    async def handle_stripe_webhook(
        self, request: pb.HandleStripeWebhookRequest, context: Context
    ) -> pb.HandleStripeWebhookResponse:
        now = self._clock.now()
        webhooks.verify(
            self._settings.stripe_webhook_secret,
            request.payload,
            request.signature,
            now,
            self._settings.stripe_webhook_tolerance_s,
        )
        event = webhooks.parse(request.payload)
        async with unit_of_work(self._pool) as conn:
            result = await webhooks.handle(conn, event, self._policy, now)
        return pb.HandleStripeWebhookResponse(
            event_id=result.event_id,
            event_type=result.event_type,
            duplicate=result.duplicate,
            applied=result.applied,
        )

    async def authorize_deposit(
        self, request: pb.AuthorizeDepositRequest, context: Context
    ) -> pb.AuthorizeDepositResponse:
        # Only booking-service holds slots; the customer paying is anonymous to us.
        current_caller.get().require_service("booking")
        bid = service.parse_id(request.business_id, "business_id")
        aid = service.parse_id(request.appointment_id, "appointment_id")
        result = await deposits.authorize(
            self._pool,
            self._gateway,
            bid,
            aid,
            request.amount,
            request.customer_email.strip(),
            request.description.strip(),
            self._clock.now(),
        )
        return pb.AuthorizeDepositResponse(
            deposit=result.deposit.message(), client_secret=result.client_secret
        )

    async def get_deposit(self, request: pb.GetDepositRequest, context: Context) -> pb.GetDepositResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            found = await deposits.read(conn, bid, request.appointment_id)
        return pb.GetDepositResponse(deposit=found.message())
