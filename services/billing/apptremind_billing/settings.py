"""The billing-service's settings: the platform's plus Stripe's (secrets only from the environment)."""

from __future__ import annotations

from pydantic import Field

from apptremind_platform.settings import ServiceSettings
from apptremind_platform.webhook_signatures import STRIPE_DEFAULT_TOLERANCE_S


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    # Stripe API key (APPTREMIND_STRIPE_API_KEY); empty turns the Stripe RPCs into FAILED_PRECONDITION.
    stripe_api_key: str = ""
    # Where the Stripe API is: Stripe itself, or stripe-mock in tests and `make up`.
    stripe_api_base: str = "https://api.stripe.com"
    # The webhook endpoint's signing secret (whsec_...); empty refuses every webhook.
    stripe_webhook_secret: str = ""
    stripe_webhook_tolerance_s: int = Field(default=STRIPE_DEFAULT_TOLERANCE_S, gt=0)
    # Stripe price ids of the paid plans.
    stripe_price_pro: str = ""
    stripe_price_business: str = ""
    # Where Stripe sends the user back when the request names no URL.
    billing_return_url: str = "http://127.0.0.1:8080/billing"
    # How long a business keeps its paid plan after a failed payment.
    billing_grace_period_s: int = Field(default=7 * 24 * 3600, ge=0)
    # How often stale reservations expire and past-due businesses past their grace are downgraded.
    billing_housekeeping_interval_s: float = Field(default=30.0, gt=0)
    # How often the deposit settler looks for captures and cancellations Stripe has not done yet.
    billing_settle_interval_s: float = Field(default=1.0, gt=0)

    def price_ids(self) -> dict[str, str]:
        """plan id -> Stripe price id, for the paid plans that have one configured."""
        prices = {"pro": self.stripe_price_pro, "business": self.stripe_price_business}
        return {plan: price for plan, price in prices.items() if price}
