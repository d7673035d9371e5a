"""Twilio's webhook signature (``X-Twilio-Signature``): computed by the SMS sink, checked at the edge.

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
