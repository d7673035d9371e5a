"""Access tokens: signed by one key set, verified with the JWKS, refetched when a new key appears."""

from __future__ import annotations

import datetime as dt
import json

import jwt
import pytest

from apptremind_platform.access_tokens import TokenVerifier, public_jwk
from apptremind_platform.errors import PermissionDenied, Unauthenticated
from apptremind_platform.identity import Caller
from tests.fixtures.tokens import SigningKeys


async def test_claims_round_trip() -> None:
    keys = SigningKeys()
    claims = await keys.verifier().verify(keys.token("u1", {"b1": "owner", "b2": "staff"}))
    assert claims.user_id == "u1"
    assert dict(claims.memberships) == {"b1": "owner", "b2": "staff"}
    assert claims.expires_at > dt.datetime.now(dt.UTC)


async def test_rotation_is_picked_up_without_restart() -> None:
    old, new = SigningKeys(), SigningKeys()
    published = [old]
    fetches = 0

    async def jwks() -> str:
        nonlocal fetches
        fetches += 1
        return json.dumps({"keys": [public_jwk(k.kid, k.private_key.public_key()) for k in published]})

    verifier = TokenVerifier(jwks, min_refresh_interval_s=0)
    assert (await verifier.verify(old.token("u"))).user_id == "u"
    published.append(new)
    assert (await verifier.verify(new.token("u"))).user_id == "u"
    assert (await verifier.verify(old.token("u"))).user_id == "u"  # old tokens stay valid until expiry
    assert fetches == 2


async def test_unknown_keys_do_not_hammer_the_jwks() -> None:
    fetches = 0
    keys = SigningKeys()

    async def jwks() -> str:
        nonlocal fetches
        fetches += 1
        return await keys.jwks()

    verifier = TokenVerifier(jwks, min_refresh_interval_s=60)
    stranger = SigningKeys()
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="not signed by a known key"):
            await verifier.verify(stranger.token("u"))
    assert fetches == 1


async def test_tampered_and_foreign_tokens_are_refused() -> None:
    keys = SigningKeys()
    verifier = keys.verifier()
    token = keys.token("u", {"b": "staff"})
    header, _payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        json.dumps({**jwt.decode(token, options={"verify_signature": False}), "mem": {"b": "owner"}}).encode()
    ).decode()
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(f"{header}.{forged_payload}.{signature}")
    assert refused.value.reason == "invalid_token"
    hs256 = jwt.encode(
        {"sub": "u"}, "a-long-enough-secret-for-hs256-signing!", algorithm="HS256", headers={"kid": keys.kid}
    )
    with pytest.raises(Unauthenticated):
        await verifier.verify(hs256)


def test_caller_authorisation() -> None:
    caller = Caller(user_id="u", memberships={"b1": "owner", "b2": "staff"}, token="t")
    assert caller.require_manager("b1") == "owner"
    with pytest.raises(PermissionDenied) as denied:
        caller.require_manager("b2")
    assert denied.value.reason == "insufficient_role"
    with pytest.raises(PermissionDenied) as denied:
        caller.require_role("b3")
    assert denied.value.reason == "not_a_member"
    with pytest.raises(Unauthenticated) as anonymous:
        Caller(auth_error="token_expired").require_role("b1")
    assert anonymous.value.reason == "token_expired"
