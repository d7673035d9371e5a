"""Races the database must settle: the same refresh token twice at once, the same e-mail twice at once,
and the first signing key created by several calls at once."""

from __future__ import annotations

import asyncio

import grpc

from apptremind_gen.apptremind.auth.v1 import (
    GetJwksRequest,
    GetJwksResponse,
    RefreshSessionRequest,
    RefreshSessionResponse,
    SignUpRequest,
    SignUpResponse,
)
from apptremind_platform.interceptors import ERROR_REASON_KEY
from tests.integration.auth.harness import PASSWORD, Auth, draft, new_email


def outcome(result: object) -> str:
    """ "ok", or the refusal's reason."""
    if isinstance(result, grpc.aio.AioRpcError):
        return dict(result.trailing_metadata() or ()).get(ERROR_REASON_KEY, "no reason")  # type: ignore[no-any-return]
    if isinstance(result, BaseException):
        raise result
    return "ok"


async def test_one_refresh_token_spent_twice_at_once_wins_once_and_revokes_the_family(auth: Auth) -> None:
    signed = await auth.sign_up()
    assert signed.session is not None
    request = RefreshSessionRequest(refresh_token=signed.session.refresh_token)
    results = await asyncio.gather(
        *(auth.client.call("RefreshSession", request, RefreshSessionResponse, timeout=30) for _ in range(2)),
        return_exceptions=True,
    )
    # The token row lock serialises the two: the first rotates, the second is a reuse.
    assert sorted(outcome(r) for r in results) == ["ok", "refresh_token_reused"]
    [winner] = [r for r in results if isinstance(r, RefreshSessionResponse)]
    assert winner.session is not None
    refused = await auth.refused(
        "RefreshSession", RefreshSessionRequest(refresh_token=winner.session.refresh_token)
    )
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_revoked")


async def test_one_email_signed_up_three_times_at_once_makes_one_account(auth: Auth) -> None:
    email = new_email()
    results = await asyncio.gather(
        *(
            auth.client.call(
                "SignUp",
                SignUpRequest(email=email, password=PASSWORD, business=draft()),
                SignUpResponse,
                timeout=30,
            )
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    assert sorted(outcome(r) for r in results) == ["email_taken", "email_taken", "ok"]
    assert auth.count("SELECT count(*) FROM users") == 1
    assert auth.count("SELECT count(*) FROM outbox") == 1


async def test_the_first_signing_keys_are_made_once(auth: Auth) -> None:
    documents = await asyncio.gather(
        *(auth.client.call("GetJwks", GetJwksRequest(), GetJwksResponse, timeout=30) for _ in range(6))
    )
    assert len({d.jwks_json for d in documents}) == 1
    # One current key and one published next key, however many calls raced to create them.
    assert auth.count("SELECT count(*) FROM signing_keys WHERE activated_at IS NOT NULL") == 1
    assert auth.count("SELECT count(*) FROM signing_keys WHERE activated_at IS NULL") == 1
