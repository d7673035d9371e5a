"""Service credentials: service tokens verified into service callers, `require_service`, and the client side
that fetches tokens from auth-service (here a small real gRPC server speaking IssueServiceToken) and caches
them until shortly before they expire."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import jwt
import pytest
from pydantic import SecretStr

from apptremind_devstack.ports import free_port
from apptremind_gen.apptremind.auth.v1 import IssueServiceTokenRequest, IssueServiceTokenResponse
from apptremind_platform import access_tokens
from apptremind_platform.clock import SettableClock
from apptremind_platform.errors import PermissionDenied, Unauthenticated
from apptremind_platform.grpc_bridge import outgoing_metadata
from apptremind_platform.identity import Caller, current_caller
from apptremind_platform.server import GrpcServer
from apptremind_platform.service_credentials import (
    AUTH_SERVICE,
    ServiceCredentialsUnavailable,
    auth_issued_tokens,
    bearer_metadata,
    secret_digest,
    service_tokens_for,
)
from apptremind_platform.settings import ServiceSettings
from tests.fixtures.tokens import SigningKeys

KEYS = SigningKeys()
SECRET = "booking-secret-0123456789"
TTL = dt.timedelta(minutes=15)


def forged(keys: SigningKeys, **claims: object) -> str:
    """A token signed by `keys` with exactly these claims over the standard ones."""
    now = dt.datetime.now(dt.UTC)
    base = {
        "iss": access_tokens.ISSUER,
        "aud": access_tokens.AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + TTL).timestamp()),
    }
    return jwt.encode({**base, **claims}, keys.private_key, algorithm="EdDSA", headers={"kid": keys.kid})


# -- verifying service tokens -------------------------------------------------------------------------


async def test_a_service_token_verifies_into_a_service_caller() -> None:
    token = KEYS.service_token("booking")
    claims = await KEYS.verifier().verify(token)
    assert (claims.service, claims.user_id, dict(claims.memberships)) == ("booking", "", {})
    assert claims.expires_at > dt.datetime.now(dt.UTC)
    caller = await KEYS.verifier().caller(token)
    assert caller == Caller(service="booking", token=token)
    assert caller.anonymous
    assert caller.to_metadata() == [("authorization", f"Bearer {token}")]
    raw = jwt.decode(token, options={"verify_signature": False})
    assert (raw["sub"], raw["svc"], raw["mem"]) == ("service:booking", "booking", {})


async def test_require_service_admits_only_the_named_services() -> None:
    verifier = KEYS.verifier()
    booking = await verifier.caller(KEYS.service_token("booking"))
    assert booking.require_service("booking") == "booking"
    assert booking.require_service("notification", "booking") == "booking"
    with pytest.raises(PermissionDenied) as denied:
        booking.require_service("notification")
    assert denied.value.reason == "service_not_allowed"


async def test_require_service_refuses_a_user_token() -> None:
    owner = await KEYS.verifier().caller(KEYS.token("u1", {"b1": "owner"}))
    assert owner.user_id == "u1"
    with pytest.raises(PermissionDenied) as denied:
        owner.require_service("booking")
    assert denied.value.reason == "service_not_allowed"


async def test_require_service_without_a_valid_token_is_unauthenticated() -> None:
    verifier = KEYS.verifier()
    with pytest.raises(Unauthenticated) as refused:
        Caller().require_service("booking")
    assert refused.value.reason == "unauthenticated"

    expired = KEYS.service_token("booking", now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    stranger = SigningKeys().service_token("booking")
    header, payload, signature = KEYS.service_token("notification").split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    renamed = jwt.utils.base64url_encode(
        json.dumps({**claims, "svc": "booking", "sub": "service:booking"}).encode()
    ).decode()
    tampered = f"{header}.{renamed}.{signature}"
    for token, reason in (
        (expired, "token_expired"),
        (stranger, "unknown_signing_key"),
        (tampered, "invalid_token"),
    ):
        caller = await verifier.caller(token)
        assert caller == Caller(auth_error=reason)
        with pytest.raises(Unauthenticated) as refused:
            caller.require_service("booking")
        assert refused.value.reason == reason


async def test_a_service_caller_is_no_user_and_no_member() -> None:
    caller = await KEYS.verifier().caller(KEYS.service_token("booking"))
    for check in (
        caller.require_user,
        lambda: caller.require_role("b1"),
        lambda: caller.require_manager("b1"),
    ):
        with pytest.raises(Unauthenticated) as refused:
            check()
        assert refused.value.reason == "user_token_required"


@pytest.mark.parametrize(
    "claims",
    [
        # Both a service and memberships: not a token sign_service makes.
        {"sub": "service:booking", "svc": "booking", "mem": {"b1": "owner"}},
        {"sub": "service:booking", "svc": "", "mem": {}},
        {"sub": "service:booking", "svc": ["booking"], "mem": {}},
        {"sub": "u1", "svc": "booking", "mem": {}},
        # A service subject without the service claim is not a user either.
        {"sub": "service:booking", "mem": {}},
    ],
)
async def test_inconsistent_service_claims_are_refused(claims: dict[str, object]) -> None:
    token = forged(KEYS, **claims)
    with pytest.raises(Unauthenticated) as refused:
        await KEYS.verifier().verify(token)
    assert refused.value.reason == "invalid_token"
    assert await KEYS.verifier().caller(token) == Caller(auth_error="invalid_token")


def test_require_service_needs_names() -> None:
    with pytest.raises(ValueError, match="names of the services"):
        Caller(service="booking").require_service()


# -- fetching tokens from auth-service ----------------------------------------------------------------


@dataclass
class SmallAuth:
    """IssueServiceToken only, with auth-service's answers: one client, a clock tests move."""

    clock: SettableClock
    secrets: dict[str, str] = field(default_factory=lambda: {"booking": SECRET})
    requests: list[tuple[str, Caller]] = field(default_factory=list)
    delay_s: float = 0.0

    async def issue_service_token(
        self, request: IssueServiceTokenRequest, context: grpc.aio.ServicerContext
    ) -> IssueServiceTokenResponse:
        self.requests.append((request.client_id, current_caller.get()))
        if self.delay_s:
            # Holds the fetch open so that concurrent callers pile up behind it.
            await asyncio.sleep(self.delay_s)
        if self.secrets.get(request.client_id) != request.client_secret:
            raise Unauthenticated("invalid_client", "the client id or secret is wrong")
        token, expires = access_tokens.sign_service(
            KEYS.private_key, KEYS.kid, request.client_id, TTL, self.clock.now()
        )
        return IssueServiceTokenResponse(access_token=token, expires_at=expires)


@pytest.fixture
async def auth() -> AsyncIterator[tuple[SmallAuth, GrpcServer]]:
    servicer = SmallAuth(SettableClock(dt.datetime.now(dt.UTC)))
    server = GrpcServer(
        ServiceSettings(grpc_port=0, http_port=0), [(servicer, AUTH_SERVICE)], verifier=KEYS.verifier()
    )
    await server.start()
    yield servicer, server
    await server.stop(0)


async def test_many_calls_share_one_fetch_until_shortly_before_expiry(
    auth: tuple[SmallAuth, GrpcServer],
) -> None:
    servicer, server = auth
    tokens = auth_issued_tokens(f"127.0.0.1:{server.port}", "booking", SECRET, clock=servicer.clock)
    servicer.delay_s = 0.2
    first = await asyncio.gather(*(tokens() for _ in range(20)))
    servicer.delay_s = 0
    assert len(set(first)) == 1 and len(servicer.requests) == 1
    assert (await KEYS.verifier().verify(first[0])).service == "booking"
    for _ in range(5):
        assert await tokens() == first[0]

    # Until 60 s before expiry the cached token is used; from then on a new one is fetched.
    servicer.clock.advance(TTL - dt.timedelta(seconds=61))
    assert await tokens() == first[0]
    assert len(servicer.requests) == 1
    servicer.clock.advance(dt.timedelta(seconds=2))
    second = await tokens()
    assert second != first[0]
    assert len(servicer.requests) == 2
    assert await tokens() == second
    assert len(servicer.requests) == 2


async def test_the_fetch_carries_no_caller_identity(auth: tuple[SmallAuth, GrpcServer]) -> None:
    servicer, server = auth
    tokens = auth_issued_tokens(f"127.0.0.1:{server.port}", "booking", SECRET, clock=servicer.clock)
    # Fetched while handling a user's call: the user's token must not travel to auth with the secret.
    reset = current_caller.set(KEYS.caller("u1", {"b1": "owner"}))
    try:
        await tokens()
    finally:
        current_caller.reset(reset)
    assert servicer.requests == [("booking", Caller())]


async def test_a_refused_secret_raises(auth: tuple[SmallAuth, GrpcServer]) -> None:
    servicer, server = auth
    tokens = auth_issued_tokens(f"127.0.0.1:{server.port}", "booking", "wrong", clock=servicer.clock)
    with pytest.raises(ServiceCredentialsUnavailable, match="UNAUTHENTICATED invalid_client"):
        await tokens()


async def test_unreachable_auth_raises() -> None:
    tokens = auth_issued_tokens(f"127.0.0.1:{free_port()}", "booking", SECRET)
    with pytest.raises(ServiceCredentialsUnavailable, match="UNAVAILABLE"):
        await tokens()


async def test_an_auth_outage_is_bridged_by_the_token_in_hand_until_it_expires(
    auth: tuple[SmallAuth, GrpcServer],
) -> None:
    servicer, server = auth
    tokens = auth_issued_tokens(f"127.0.0.1:{server.port}", "booking", SECRET, clock=servicer.clock)
    token = await tokens()
    servicer.secrets.clear()  # auth now refuses every refresh
    servicer.clock.advance(TTL - dt.timedelta(seconds=30))
    assert await tokens() == token
    assert len(servicer.requests) == 2
    servicer.clock.advance(dt.timedelta(seconds=30))
    with pytest.raises(ServiceCredentialsUnavailable):
        await tokens()


async def test_service_tokens_for_uses_the_service_name_and_secret(
    auth: tuple[SmallAuth, GrpcServer],
) -> None:
    servicer, server = auth
    target = f"127.0.0.1:{server.port}"
    assert service_tokens_for(ServiceSettings(service_name="booking", auth_target=target)) is None
    settings = ServiceSettings(
        service_name="booking", auth_target=target, service_client_secret=SecretStr(SECRET)
    )
    tokens = service_tokens_for(settings)
    assert tokens is not None
    metadata = await bearer_metadata(tokens)
    [(key, value)] = metadata
    assert key == "authorization" and value.startswith("Bearer ")
    assert (await KEYS.verifier().caller(value.removeprefix("Bearer "))).service == "booking"
    assert servicer.requests[0][0] == "booking"
    # Sent while handling a user's call, the service's bearer replaces the user's forwarded token.
    reset = current_caller.set(KEYS.caller("u1", {"b1": "owner"}))
    try:
        assert [pair for pair in outgoing_metadata(metadata) if pair[0] == "authorization"] == metadata
    finally:
        current_caller.reset(reset)


def test_the_settings_read_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SERVICE_CLIENT_SECRET", SECRET)
    assert ServiceSettings().service_client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(ServiceSettings())
    assert secret_digest(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()
