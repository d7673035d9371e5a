"""Signing keys through the real auth-service: JWKS, rotation without downtime, the admin gate."""

from __future__ import annotations

import datetime as dt
import json

import grpc

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import (
    GetJwksRequest,
    GetJwksResponse,
    GetMeRequest,
    GetMeResponse,
    LogInRequest,
    LogInResponse,
    RotateSigningKeyRequest,
    RotateSigningKeyResponse,
)
from apptremind_platform.access_tokens import TokenVerifier
from tests.integration.auth.harness import (
    ADMIN_TOKEN,
    PASSWORD,
    Auth,
    claims,
    kid_of,
    new_email,
    started_auth,
)

ADMIN = [("x-apptremind-admin-token", ADMIN_TOKEN)]


async def jwks_kids(auth: Auth) -> list[str]:
    response = await auth.call("GetJwks", GetJwksRequest(), GetJwksResponse)
    keys = json.loads(response.jwks_json)["keys"]
    assert all(key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key for key in keys)
    return [key["kid"] for key in keys]


async def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(auth: Auth) -> None:
    email = new_email()
    before = (await auth.sign_up(email)).session
    assert before is not None
    old_kid = kid_of(before.access_token)
    assert old_kid in await jwks_kids(auth)
    # The service's own verifier caches the JWKS now, and refetches at most every few seconds.
    await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=before.access_token)

    rotated = await auth.call(
        "RotateSigningKey", RotateSigningKeyRequest(), RotateSigningKeyResponse, metadata=ADMIN
    )
    assert rotated.kid and rotated.kid != old_kid
    kids = await jwks_kids(auth)
    assert {old_kid, rotated.kid} <= set(kids)

    # A token signed before the rotation still verifies.
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=before.access_token)
    assert me.user is not None and me.user.email == email
    # New tokens carry the new key id, and verify too.
    after = await auth.call("LogIn", LogInRequest(email=email, password=PASSWORD), LogInResponse)
    assert after.session is not None
    assert kid_of(after.session.access_token) == rotated.kid
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=after.session.access_token)
    assert me.user is not None and me.user.email == email


async def test_a_verifier_that_cached_the_jwks_before_rotation_accepts_new_tokens(auth: Auth) -> None:
    """The key a rotation makes current was already published, so caches need no refetch for it."""
    email = new_email()
    before = (await auth.sign_up(email)).session
    assert before is not None
    fetches = 0

    async def fetch_jwks() -> str:
        nonlocal fetches
        fetches += 1
        return str((await auth.call("GetJwks", GetJwksRequest(), GetJwksResponse)).jwks_json)

    # Like the edge: one verifier that refetches only for an unknown key id, and here not within the test.
    edge = TokenVerifier(fetch_jwks, min_refresh_interval_s=3600)
    assert (await edge.verify(before.access_token)).user_id == claims(before.access_token)["sub"]
    await auth.call("RotateSigningKey", RotateSigningKeyRequest(), RotateSigningKeyResponse, metadata=ADMIN)
    after = await auth.call("LogIn", LogInRequest(email=email, password=PASSWORD), LogInResponse)
    assert after.session is not None
    assert kid_of(after.session.access_token) != kid_of(before.access_token)
    assert (await edge.verify(after.session.access_token)).user_id == claims(before.access_token)["sub"]
    assert fetches == 1


async def test_retired_keys_leave_the_jwks_once_their_tokens_expired(auth: Auth) -> None:
    first = (await auth.sign_up()).session
    assert first is not None
    old_kid = kid_of(first.access_token)
    await auth.call("RotateSigningKey", RotateSigningKeyRequest(), RotateSigningKeyResponse, metadata=ADMIN)
    auth.clock.advance(dt.timedelta(minutes=15))
    assert old_kid in await jwks_kids(auth)
    # Past the access-token lifetime plus the verifiers' leeway nothing it signed is still valid.
    auth.clock.advance(dt.timedelta(seconds=10))
    assert old_kid not in await jwks_kids(auth)
    await auth.call("RotateSigningKey", RotateSigningKeyRequest(), RotateSigningKeyResponse, metadata=ADMIN)
    # Rotation deletes private keys that nobody can need any more.
    assert auth.count("SELECT count(*) FROM signing_keys WHERE kid = %s", (old_kid,)) == 0


async def test_rotation_needs_the_admin_token(auth: Auth) -> None:
    await auth.sign_up()
    kids = await jwks_kids(auth)
    for metadata in ([], [("x-apptremind-admin-token", "guess")], [("x-apptremind-admin-token", "")]):
        refused = await auth.refused("RotateSigningKey", RotateSigningKeyRequest(), metadata=metadata)
        assert refused == (grpc.StatusCode.PERMISSION_DENIED, "invalid_admin_token")
    assert await jwks_kids(auth) == kids


async def test_rotation_is_disabled_without_an_admin_token(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    async with started_auth(postgres, kafka, auth_admin_token="") as auth:
        for metadata in ([], [("x-apptremind-admin-token", "")], [("x-apptremind-admin-token", ADMIN_TOKEN)]):
            refused = await auth.refused("RotateSigningKey", RotateSigningKeyRequest(), metadata=metadata)
            assert refused == (grpc.StatusCode.PERMISSION_DENIED, "admin_disabled")
        assert auth.count("SELECT count(*) FROM signing_keys WHERE retired_at IS NOT NULL") == 0
