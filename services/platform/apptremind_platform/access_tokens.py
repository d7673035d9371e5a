"""Access tokens: short-lived JWTs signed by auth-service with Ed25519 (EdDSA), keys published as a JWKS.

One place for the claims format: auth-service signs user tokens with `sign` and service tokens (a service
calling on its own behalf, ADR 0013) with `sign_service`; every service verifies both with
`TokenVerifier`, which caches the JWKS and refetches it when a token names a key id it has not seen (so a
key rotation needs no restart anywhere).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import Unauthenticated
from .identity import ROLES, Caller

ISSUER = "apptremind-auth"
AUDIENCE = "apptremind"
ALGORITHM = "EdDSA"
LEEWAY_S = 5

JwksSource = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    memberships: Mapping[str, str]
    expires_at: dt.datetime
    session_id: str
    # The calling service for a service token (claim `svc`); then user_id is "" and memberships are empty.
    service: str = ""


SERVICE_SUBJECT_PREFIX = "service:"


def sign(
    private_key: Ed25519PrivateKey,
    kid: str,
    user_id: str,
    memberships: Mapping[str, str],
    session_id: str,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> tuple[str, dt.datetime]:
    expires = now + ttl
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "sid": session_id,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "mem": dict(memberships),
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid}), expires


def sign_service(
    private_key: Ed25519PrivateKey,
    kid: str,
    service: str,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> tuple[str, dt.datetime]:
    """A token for `service` calling on its own behalf: no user, no session and never any membership."""
    if not service:
        raise ValueError("a service token needs the service's name")
    expires = now + ttl
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SERVICE_SUBJECT_PREFIX + service,
        "svc": service,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "mem": {},
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid}), expires


def public_jwk(kid: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public_key))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return jwk


def remote_jwks(target: str) -> JwksSource:
    """The auth-service's JWKS over gRPC (one channel, reused)."""
    from apptremind_gen.apptremind.auth.v1 import GetJwksRequest, GetJwksResponse

    from .grpc_bridge import AsyncServiceClient, open_channel

    client = AsyncServiceClient(open_channel(target), "apptremind.auth.v1.AuthService")

    async def fetch() -> str:
        response = await client.call("GetJwks", GetJwksRequest(), GetJwksResponse, timeout=3.0)
        return str(response.jwks_json)

    return fetch


class TokenVerifier:
    def __init__(self, source: JwksSource, min_refresh_interval_s: float = 5.0) -> None:
        self._source = source
        self._keys: dict[str, Any] = {}
        self._min_refresh = min_refresh_interval_s
        self._last_refresh = -1e9
        self._lock = asyncio.Lock()

    async def _key(self, kid: str) -> Any:
        if kid not in self._keys:
            async with self._lock:
                # A burst of tokens with an unknown kid (forged, or from a key we never saw) must not turn
                # into a burst of JWKS fetches.
                if kid not in self._keys and time.monotonic() - self._last_refresh >= self._min_refresh:
                    self._last_refresh = time.monotonic()
                    document = json.loads(await self._source())
                    self._keys = {
                        key["kid"]: jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(key))
                        for key in document.get("keys", [])
                    }
        if kid not in self._keys:
            raise Unauthenticated("unknown_signing_key", "the token was not signed by a known key")
        return self._keys[kid]

    async def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed_token", "the access token is malformed") from exc
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise Unauthenticated("malformed_token", "the access token is malformed")
        key = await self._key(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token_expired", "the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid_token", "the access token is not valid") from exc
        memberships = claims.get("mem") or {}
        if not isinstance(memberships, dict) or any(role not in ROLES for role in memberships.values()):
            raise Unauthenticated("invalid_token", "the access token is not valid")
        expires_at = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
        if "svc" in claims:
            service = claims["svc"]
            # A service token never lists memberships: one that does was not made by sign_service, and
            # honouring either half of it would be a guess.
            if (
                not isinstance(service, str)
                or not service
                or memberships
                or claims["sub"] != SERVICE_SUBJECT_PREFIX + service
            ):
                raise Unauthenticated("invalid_token", "the access token is not valid")
            return AccessClaims(
                user_id="", memberships={}, expires_at=expires_at, session_id="", service=service
            )
        if str(claims["sub"]).startswith(SERVICE_SUBJECT_PREFIX):
            # A service's subject without the service claim: half a service token, never a user.
            raise Unauthenticated("invalid_token", "the access token is not valid")
        return AccessClaims(
            user_id=str(claims["sub"]),
            memberships={str(k): str(v) for k, v in memberships.items()},
            expires_at=expires_at,
            session_id=str(claims.get("sid", "")),
        )

    async def caller(self, token: str) -> Caller:
        """The verified caller, or an anonymous one that remembers why the token was refused."""
        try:
            claims = await self.verify(token)
        except Unauthenticated as exc:
            return Caller(auth_error=exc.reason)
        except Exception:
            # The JWKS could not be fetched (auth-service unreachable): refuse rather than guess.
            return Caller(auth_error="signing_keys_unavailable")
        if claims.service:
            return Caller(service=claims.service, token=token)
        return Caller(user_id=claims.user_id, memberships=claims.memberships, token=token)
