"""Service credentials through the real auth-service: IssueServiceToken for configured clients, the same
refusal for an unknown client and a wrong secret, tokens that name a service and never pass user checks, and
secret rotation with two hashes for one client (ADR 0013)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from apptremind_auth.settings import AuthSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import (
    GetJwksRequest,
    GetJwksResponse,
    GetMeRequest,
    InviteStaffRequest,
    IssueServiceTokenRequest,
    IssueServiceTokenResponse,
    ListMembersRequest,
    Role,
    RotateSigningKeyRequest,
    RotateSigningKeyResponse,
)
from apptremind_platform.access_tokens import TokenVerifier
from apptremind_platform.identity import Caller
from apptremind_platform.service_credentials import (
    ServiceCredentialsUnavailable,
    auth_issued_tokens,
    secret_digest,
)
from tests.integration.auth.harness import ADMIN_TOKEN, Auth, claims, kid_of, started_auth

BOOKING_SECRET = "booking-" + uuid.uuid4().hex
NOTIFICATION_SECRET = "notification-" + uuid.uuid4().hex
CLIENTS = f"booking:{secret_digest(BOOKING_SECRET)},notification:{secret_digest(NOTIFICATION_SECRET)}"


@pytest.fixture
async def auth(postgres: PostgresServer, kafka: KafkaBroker) -> AsyncIterator[Auth]:
    async with started_auth(postgres, kafka, auth_service_clients=CLIENTS) as started:
        yield started


def verifier_of(auth: Auth) -> TokenVerifier:
    """A verifier like every other service's: the JWKS fetched from auth over gRPC."""

    async def jwks() -> str:
        return str((await auth.call("GetJwks", GetJwksRequest(), GetJwksResponse)).jwks_json)

    return TokenVerifier(jwks, min_refresh_interval_s=0)


async def issue(auth: Auth, client_id: str, secret: str) -> IssueServiceTokenResponse:
    request = IssueServiceTokenRequest(client_id=client_id, client_secret=secret)
    return await auth.call("IssueServiceToken", request, IssueServiceTokenResponse)


async def refusal(auth: Auth, client_id: str, secret: str) -> tuple[grpc.StatusCode, str, str]:
    """Code, message and reason of a refused IssueServiceToken."""
    request = IssueServiceTokenRequest(client_id=client_id, client_secret=secret)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await auth.client.call("IssueServiceToken", request, timeout=30)
    trailers = dict(info.value.trailing_metadata() or ())
    return info.value.code(), str(info.value.details()), str(trailers.get("x-error-reason"))


async def test_a_configured_client_gets_a_token_that_verifies_as_the_service(auth: Auth) -> None:
    issued = await issue(auth, "booking", BOOKING_SECRET)
    assert issued.expires_at == auth.clock.now() + dt.timedelta(minutes=15)
    caller = await verifier_of(auth).caller(issued.access_token)
    assert caller == Caller(service="booking", token=issued.access_token)
    assert caller.require_service("booking") == "booking"
    token_claims = claims(issued.access_token)
    assert token_claims["sub"] == "service:booking"
    assert token_claims["svc"] == "booking"
    assert token_claims["mem"] == {}
    assert (token_claims["iss"], token_claims["aud"]) == ("apptremind-auth", "apptremind")
    # Signed with the key that signs user tokens now.
    user_session = (await auth.sign_up()).session
    assert user_session is not None
    assert kid_of(issued.access_token) == kid_of(user_session.access_token)

    notification = await issue(auth, "notification", NOTIFICATION_SECRET)
    assert (await verifier_of(auth).caller(notification.access_token)).service == "notification"


async def test_an_unknown_client_and_a_wrong_secret_get_the_same_answer(auth: Auth) -> None:
    wrong_secret = await refusal(auth, "booking", NOTIFICATION_SECRET)
    unknown_client = await refusal(auth, "billing", BOOKING_SECRET)
    assert wrong_secret == unknown_client
    assert wrong_secret[0] == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_secret[2] == "invalid_client"
    assert (await refusal(auth, "booking", BOOKING_SECRET + "x"))[2] == "invalid_client"


async def test_bad_input_is_invalid_argument(auth: Auth) -> None:
    for client_id, secret, reason in (
        ("", BOOKING_SECRET, "missing_client_id"),
        ("Booking!", BOOKING_SECRET, "invalid_client_id"),
        ("booking", "", "missing_client_secret"),
        ("booking", "x" * 513, "invalid_client_secret"),
    ):
        code, _, got = await refusal(auth, client_id, secret)
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


async def test_a_service_token_passes_no_user_check(auth: Auth) -> None:
    token = (await issue(auth, "booking", BOOKING_SECRET)).access_token
    owner = await auth.owner()
    for method, request in (
        ("GetMe", GetMeRequest()),
        ("ListMembers", ListMembersRequest(business_id=owner.business_id)),
        (
            "InviteStaff",
            InviteStaffRequest(business_id=owner.business_id, email="x@example.com", role=Role.STAFF),
        ),
    ):
        refused = await auth.refused(method, request, token=token)
        assert refused == (grpc.StatusCode.UNAUTHENTICATED, "user_token_required"), method
    assert auth.count("SELECT count(*) FROM invitations") == 0


async def test_no_configured_clients_means_no_service_tokens(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    async with started_auth(postgres, kafka) as auth:
        code, _, reason = await refusal(auth, "booking", BOOKING_SECRET)
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")


async def test_a_secret_is_rotated_by_listing_two_hashes(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    new_secret = "booking-next-" + uuid.uuid4().hex
    during = f"booking:{secret_digest(BOOKING_SECRET)}|{secret_digest(new_secret)}"
    async with started_auth(postgres, kafka, auth_service_clients=during) as auth:
        for secret in (BOOKING_SECRET, new_secret):
            token = (await issue(auth, "booking", secret)).access_token
            assert (await verifier_of(auth).caller(token)).service == "booking"
    after = f"booking:{secret_digest(new_secret)}"
    async with started_auth(postgres, kafka, auth_service_clients=after) as auth:
        assert (await refusal(auth, "booking", BOOKING_SECRET))[2] == "invalid_client"
        assert (await issue(auth, "booking", new_secret)).access_token


async def test_the_lifetime_is_a_setting_and_retired_keys_outlive_service_tokens(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    async with started_auth(
        postgres, kafka, auth_service_clients=CLIENTS, auth_service_token_ttl_s=3600
    ) as auth:
        issued = await issue(auth, "booking", BOOKING_SECRET)
        assert issued.expires_at == auth.clock.now() + dt.timedelta(hours=1)
        await auth.call(
            "RotateSigningKey",
            RotateSigningKeyRequest(),
            RotateSigningKeyResponse,
            metadata=[("x-apptremind-admin-token", ADMIN_TOKEN)],
        )
        # Past the user tokens' 15 minutes the key that signed the service token is still published.
        auth.clock.advance(dt.timedelta(minutes=30))
        jwks = (await auth.call("GetJwks", GetJwksRequest(), GetJwksResponse)).jwks_json
        assert kid_of(issued.access_token) in jwks


async def test_auth_issued_tokens_against_the_real_auth(auth: Auth) -> None:
    target = f"127.0.0.1:{auth.runtime.port}"
    tokens = auth_issued_tokens(target, "notification", NOTIFICATION_SECRET, clock=auth.clock)
    token = await tokens()
    assert await tokens() == token
    assert (await verifier_of(auth).caller(token)).require_service("notification") == "notification"
    refused = auth_issued_tokens(target, "notification", BOOKING_SECRET, clock=auth.clock)
    with pytest.raises(ServiceCredentialsUnavailable, match="invalid_client"):
        await refused()


@pytest.mark.parametrize(
    "value",
    [
        "booking",
        "booking:abc",
        f"Booking:{'a' * 64}",
        f"booking:{'a' * 64},booking:{'b' * 64}",
        f"booking:{'a' * 64}|",
    ],
)
def test_malformed_client_settings_are_refused_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="service client"):
        AuthSettings(auth_service_clients=value)


def test_client_settings_parse() -> None:
    settings = AuthSettings(auth_service_clients=f" booking:{'A' * 64}|{'b' * 64} , notification:{'c' * 64},")
    assert settings.service_clients == {
        "booking": (bytes.fromhex("aa" * 32), bytes.fromhex("bb" * 32)),
        "notification": (bytes.fromhex("cc" * 32),),
    }
