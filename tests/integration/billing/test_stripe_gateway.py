"""The Stripe gateway's failure answers, against real sockets: nothing listening, and a real stripe-mock
refusing a request."""

from __future__ import annotations

import pytest

from apptremind_billing.stripe_gateway import StripeGateway
from apptremind_devstack.ports import free_port
from apptremind_devstack.stripe_mock import StripeMock
from apptremind_platform.errors import FailedPrecondition, Unavailable


async def test_unreachable_stripe_is_unavailable() -> None:
    gateway = StripeGateway("sk_test_123", f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(Unavailable) as info:
        await gateway.create_customer("b1")
    assert info.value.reason == "stripe_unavailable"


async def test_an_unconfigured_gateway_refuses_before_calling() -> None:
    gateway = StripeGateway("", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(FailedPrecondition) as info:
        await gateway.create_portal_session("cus_1", "https://app.example/billing")
    assert info.value.reason == "stripe_not_configured"


async def test_a_request_stripe_refuses_is_a_failed_precondition(stripe_mock: StripeMock) -> None:
    gateway = StripeGateway("sk_test_123", stripe_mock.base_url)
    # stripe-mock answers a request for no subscription with Stripe's 404 invalid_request_error.
    with pytest.raises(FailedPrecondition) as info:
        await gateway.cancel_subscription("", at_period_end=False)
    assert info.value.reason == "stripe_rejected"
