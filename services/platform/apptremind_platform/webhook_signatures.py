"""Webhook signatures of third parties, computed by the local stand-ins and checked where webhooks arrive.

Stripe's (``Stripe-Signature``) is further down.

Twilio's (``X-Twilio-Signature``): computed by the SMS sink, checked at the edge.

Twilio signs ``url + concat(key + value for params sorted by key)`` with HMAC-SHA1 keyed by the account's
auth token and sends it base64-encoded. A proxy in front of the receiver may add or drop the default port,
so verification, like Twilio's own helper libraries, accepts the URL with and without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    expected = signature.encode()
    matched = False
    # Check every candidate, not the first match only, so the time taken does not reveal which one matched.
    for candidate in _url_variants(url):
        computed = twilio_signature(auth_token, candidate, params).encode()
        matched |= hmac.compare_digest(computed, expected)
    return matched


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.hostname is None:
        return [url]
    userinfo, _, _ = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    without_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{parts.port or default}"))
    return list(dict.fromkeys([url, without_port, with_port]))


# Stripe signs ``f"{t}.{raw body}"`` with HMAC-SHA256 keyed by the endpoint's signing secret and sends
# ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` (several v1 entries while a secret is rolled;
# v0 entries are test-mode leftovers and never trusted). The timestamp is signed too, so checking it against a
# tolerance stops replays of a captured request.
STRIPE_DEFAULT_TOLERANCE_S = 300


class StripeSignatureError(ValueError):
    """Why a Stripe webhook was refused; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stripe_signature(secret: str, payload: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_signature_header(secret: str, payload: bytes, timestamp: int) -> str:
    """The header Stripe would send (for local stand-ins and tests)."""
    return f"t={timestamp},v1={stripe_signature(secret, payload, timestamp)}"


def verify_stripe_signature(
    secret: str,
    payload: bytes,
    header: str,
    now: float,
    tolerance_s: int = STRIPE_DEFAULT_TOLERANCE_S,
) -> int:
    """Checks a ``Stripe-Signature`` header; returns its timestamp or raises StripeSignatureError
    (signature_missing, signature_malformed, signature_mismatch, timestamp_outside_tolerance)."""
    if not header:
        raise StripeSignatureError("signature_missing", "the Stripe-Signature header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise StripeSignatureError(
            "signature_malformed", "the Stripe-Signature header has no timestamp or no v1 signature"
        )
    expected = stripe_signature(secret, payload, timestamp).encode()
    matched = False
    # Compare against every candidate so the time taken does not reveal which one matched.
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise StripeSignatureError("signature_mismatch", "the Stripe signature does not match the payload")
    # A signed timestamp from the future is as suspicious as a stale one.
    if abs(now - timestamp) > tolerance_s:
        raise StripeSignatureError(
            "timestamp_outside_tolerance", f"the Stripe signature timestamp is more than {tolerance_s}s off"
        )
    return timestamp
