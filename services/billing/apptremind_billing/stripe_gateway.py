"""Stripe API calls through the official SDK's async client (stripe-mock in tests and `make up`).

Calls are made outside any database transaction: no row lock is held while Stripe answers. Creating a
customer carries an idempotency key derived from the business, so a retried or concurrent first checkout
reuses the same customer instead of creating two.
"""

from __future__ import annotations

from dataclasses import dataclass

import stripe

from apptremind_platform.errors import DomainError, FailedPrecondition, Unavailable
from apptremind_platform.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DepositIntent:
    payment_intent_id: str
    client_secret: str


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    session_id: str
    url: str


class StripeGateway:
    def __init__(self, api_key: str, api_base: str, timeout_s: float = 20.0) -> None:
        self._configured = bool(api_key)
        self._client = stripe.StripeClient(
            api_key or "sk_unconfigured",
            base_addresses={"api": api_base},
            http_client=stripe.HTTPXClient(timeout=timeout_s),
            max_network_retries=2,
        )

    def _require(self) -> stripe.StripeClient:
        if not self._configured:
            raise FailedPrecondition("stripe_not_configured", "Stripe is not configured for this deployment")
        return self._client

    async def create_customer(self, business_id: str) -> str:
        client = self._require()
        try:
            customer = await client.v1.customers.create_async(
                params={"metadata": {"business_id": business_id}},
                options={"idempotency_key": f"customer-{business_id}"},
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc
        return customer.id

    async def create_checkout_session(
        self, customer_id: str, price_id: str, business_id: str, plan: str, success_url: str, cancel_url: str
    ) -> CheckoutSession:
        client = self._require()
        metadata = {"business_id": business_id, "plan": plan}
        try:
            session = await client.v1.checkout.sessions.create_async(
                params={
                    "mode": "subscription",
                    "customer": customer_id,
                    "client_reference_id": business_id,
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "metadata": metadata,
                    # Subscription events then name the business and plan themselves.
                    "subscription_data": {"metadata": metadata},
                }
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc
        return CheckoutSession(session.id, session.url or "")

    async def create_portal_session(self, customer_id: str, return_url: str) -> str:
        client = self._require()
        try:
            session = await client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url}
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc
        return session.url

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool) -> None:
        client = self._require()
        try:
            if at_period_end:
                await client.v1.subscriptions.update_async(
                    subscription_id, params={"cancel_at_period_end": True}
                )
            else:
                await client.v1.subscriptions.cancel_async(subscription_id)
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc

    async def create_deposit_intent(
        self,
        amount_minor: int,
        currency: str,
        business_id: str,
        appointment_id: str,
        customer_email: str,
        description: str,
    ) -> DepositIntent:
        """A PaymentIntent that only authorises the card (capture_method manual): the money is taken when
        the appointment is settled. One per appointment, whoever asks how often (idempotency key)."""
        client = self._require()
        params: dict[str, object] = {
            "amount": amount_minor,
            "currency": currency,
            "capture_method": "manual",
            "automatic_payment_methods": {"enabled": True},
            "description": description,
            # Webhooks about the intent name the appointment themselves.
            "metadata": {"business_id": business_id, "appointment_id": appointment_id},
        }
        if customer_email:
            params["receipt_email"] = customer_email
        try:
            intent = await client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"deposit-{appointment_id}"},
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc
        return DepositIntent(intent.id, intent.client_secret or "")

    async def capture_deposit_intent(
        self, payment_intent_id: str, appointment_id: str, amount_minor: int
    ) -> None:
        client = self._require()
        try:
            await client.v1.payment_intents.capture_async(
                payment_intent_id,
                params={"amount_to_capture": amount_minor},
                options={"idempotency_key": f"deposit-capture-{appointment_id}"},
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc

    async def cancel_deposit_intent(self, payment_intent_id: str, appointment_id: str) -> None:
        client = self._require()
        try:
            await client.v1.payment_intents.cancel_async(
                payment_intent_id, options={"idempotency_key": f"deposit-cancel-{appointment_id}"}
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: stripe.StripeError) -> DomainError:
    log.warning("stripe_call_failed", error=str(exc), status=exc.http_status, kind=type(exc).__name__)
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        # Worth retrying later: Stripe was unreachable, busy or failed itself.
        return Unavailable("stripe_unavailable", "the payment provider cannot be reached right now")
    # Stripe refused the request itself (bad price id, revoked key, unknown customer): retrying won't help.
    return FailedPrecondition("stripe_rejected", "the payment provider refused the request")
