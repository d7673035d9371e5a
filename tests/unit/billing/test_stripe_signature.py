"""Stripe's webhook signature scheme, checked against the official SDK's own verifier."""

from __future__ import annotations

import time

import pytest
import stripe

from apptremind_platform.webhook_signatures import (
    StripeSignatureError,
    stripe_signature_header,
    verify_stripe_signature,
)

SECRET = "whsec_unit_test"
PAYLOAD = b'{"id": "evt_1", "type": "invoice.paid"}'
T = 1_900_000_000


def test_our_header_is_accepted_by_the_stripe_sdk() -> None:
    header = stripe_signature_header(SECRET, PAYLOAD, T)
    # The SDK checks against the real clock, so sign with the real time for it.
    now = int(time.time())
    assert stripe.WebhookSignature.verify_header(
        PAYLOAD.decode(), stripe_signature_header(SECRET, PAYLOAD, now), SECRET
    )
    assert verify_stripe_signature(SECRET, PAYLOAD, header, now=T + 10) == T


def test_a_rolled_secret_may_send_several_v1_signatures() -> None:
    old = stripe_signature_header("whsec_old", PAYLOAD, T).split(",")[1]
    header = f"t={T},{old},v0=deadbeef," + stripe_signature_header(SECRET, PAYLOAD, T).split(",")[1]
    assert verify_stripe_signature(SECRET, PAYLOAD, header, now=T) == T


@pytest.mark.parametrize(
    ("header", "now", "reason"),
    [
        ("", T, "signature_missing"),
        ("garbage", T, "signature_malformed"),
        (f"t={T}", T, "signature_malformed"),
        (f"t=soon,v1={'0' * 64}", T, "signature_malformed"),
        (stripe_signature_header("whsec_other", PAYLOAD, T), T, "signature_mismatch"),
        # Only v1 is trusted; a v0 (test-mode) signature alone is not enough.
        (
            stripe_signature_header(SECRET, PAYLOAD, T).replace("v1=", "v0=") + ",v1=00",
            T,
            "signature_mismatch",
        ),
        (stripe_signature_header(SECRET, PAYLOAD, T), T + 301, "timestamp_outside_tolerance"),
        (stripe_signature_header(SECRET, PAYLOAD, T), T - 301, "timestamp_outside_tolerance"),
    ],
)
def test_refusals_say_why(header: str, now: int, reason: str) -> None:
    with pytest.raises(StripeSignatureError) as info:
        verify_stripe_signature(SECRET, PAYLOAD, header, now=now)
    assert info.value.reason == reason


def test_tampered_payload_and_tolerance_edge() -> None:
    header = stripe_signature_header(SECRET, PAYLOAD, T)
    with pytest.raises(StripeSignatureError):
        verify_stripe_signature(SECRET, PAYLOAD + b" ", header, now=T)
    assert verify_stripe_signature(SECRET, PAYLOAD, header, now=T + 300) == T
    assert verify_stripe_signature(SECRET, PAYLOAD, header, now=T + 30, tolerance_s=30) == T
