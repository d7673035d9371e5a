"""Service credentials: a service calling another on its own behalf (no user) with a token from auth-service.

A service holds a client secret (`APPTREMIND_SERVICE_CLIENT_SECRET`; its client id is its service name),
exchanges it for a short-lived service token with `AuthService.IssueServiceToken`, and sends that token as
its bearer. `service_tokens_for(settings)` gives the callable that returns a currently valid token, fetched
once and reused until shortly before it expires (ADR 0013).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable

import grpc

from .access_tokens import LEEWAY_S
from .clock import Clock, SystemClock
from .identity import AUTHORIZATION
from .interceptors import ERROR_REASON_KEY
from .logs import get_logger
from .settings import ServiceSettings

# Returns a bearer token that is valid now; raises ServiceCredentialsUnavailable when none can be had.
ServiceTokens = Callable[[], Awaitable[str]]

AUTH_SERVICE = "apptremind.auth.v1.AuthService"
ISSUE_TIMEOUT_S = 5.0

_log = get_logger("apptremind.service_credentials")


class ServiceCredentialsUnavailable(Exception):
    """No service token: auth-service is unreachable, or it refused the client id and secret."""


def secret_digest(secret: str) -> str:
    """The SHA-256 hex digest of a client secret: what auth-service is configured with instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def auth_issued_tokens(
    auth_target: str,
    client_id: str,
    client_secret: str,
    refresh_before_s: float = 60.0,
    clock: Clock | None = None,
) -> ServiceTokens:
    """Tokens from the auth-service at `auth_target`, cached until `refresh_before_s` before they expire.

    Concurrent callers share one fetch (a lock), so a burst of calls at start or at expiry asks auth once.
    A token living less than twice `refresh_before_s` is refreshed halfway through its life instead.
    """
    from apptremind_gen.apptremind.auth.v1 import IssueServiceTokenRequest, IssueServiceTokenResponse

    from .grpc_bridge import AsyncServiceClient, open_channel

    the_clock: Clock = clock or SystemClock()
    lock = asyncio.Lock()
    client: AsyncServiceClient | None = None
    token = ""
    refresh_at = expires_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    async def fetch() -> tuple[str, dt.datetime]:
        nonlocal client
        if client is None:
            # Opened on first use, inside the event loop that will use it.
            client = AsyncServiceClient(open_channel(auth_target), AUTH_SERVICE)
        request = IssueServiceTokenRequest(client_id=client_id, client_secret=client_secret)
        try:
            # No caller identity travels with this call: the secret is the credential.
            response = await client.call(
                "IssueServiceToken",
                request,
                IssueServiceTokenResponse,
                metadata=[(AUTHORIZATION, "")],
                timeout=ISSUE_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            raise ServiceCredentialsUnavailable(
                f"auth-service at {auth_target} gave no service token for {client_id!r}: "
                f"{exc.code().name} {_reason(exc)}".rstrip()
            ) from exc
        if not response.access_token or response.expires_at is None:
            raise ServiceCredentialsUnavailable(f"auth-service at {auth_target} answered without a token")
        return str(response.access_token), response.expires_at

    async def tokens() -> str:
        nonlocal token, refresh_at, expires_at
        if token and the_clock.now() < refresh_at:
            return token
        async with lock:
            now = the_clock.now()
            if token and now < refresh_at:
                return token
            try:
                fresh, fresh_expires_at = await fetch()
            except ServiceCredentialsUnavailable as exc:
                # Refreshing early leaves room for an auth-service outage: the token in hand still works.
                if token and now < expires_at - dt.timedelta(seconds=LEEWAY_S):
                    _log.warning("service_token_refresh_failed", error=str(exc))
                    return token
                raise
            token, expires_at = fresh, fresh_expires_at
            lifetime = (expires_at - now).total_seconds()
            refresh_at = now + dt.timedelta(seconds=lifetime - min(refresh_before_s, lifetime / 2))
            return token

    return tokens


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_REASON_KEY:
            return str(value)
    return ""


def service_tokens_for(settings: ServiceSettings) -> ServiceTokens | None:
    """The service's own tokens (client id: its service name), or None when it holds no client secret."""
    secret = settings.service_client_secret.get_secret_value()
    if not secret:
        return None
    return auth_issued_tokens(settings.auth_target, settings.service_name, secret)


async def bearer_metadata(tokens: ServiceTokens) -> list[tuple[str, str]]:
    """Call metadata that authenticates as the service; it takes precedence over a forwarded user token."""
    return [(AUTHORIZATION, f"Bearer {await tokens()}")]
