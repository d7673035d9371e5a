"""Sessions through the real auth-service: refresh rotation, reuse detection, expiry, log-out, forged
identities."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import (
    GetMeRequest,
    GetMeResponse,
    ListMembersRequest,
    ListMembersResponse,
    LogOutRequest,
    LogOutResponse,
    RefreshSessionRequest,
)
from apptremind_platform import access_tokens
from apptremind_platform.clock import SettableClock
from tests.fixtures.tokens import SigningKeys
from tests.integration.auth.harness import Auth, claims, kid_of, started_auth


async def test_refresh_rotates_within_one_family(auth: Auth) -> None:
    owner = await auth.owner()
    first = owner.session
    second = await auth.refresh(first.refresh_token)
    third = await auth.refresh(second.refresh_token)

    tokens = {first.refresh_token, second.refresh_token, third.refresh_token}
    assert len(tokens) == 3
    family = {claims(s.access_token)["sid"] for s in (first, second, third)}
    assert len(family) == 1
    # Each pair works: the newest access token is accepted, and it still lists the membership.
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=third.access_token)
    assert [m.business_id for m in me.memberships] == [owner.business_id]
    assert auth.count("SELECT count(*) FROM refresh_tokens WHERE spent_at IS NOT NULL") >= 2


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(auth: Auth) -> None:
    signed = await auth.sign_up()
    assert signed.session is not None
    stolen = signed.session.refresh_token
    newest = await auth.refresh(stolen)
    # Another device's family must survive the revocation.
    bystander = (await auth.sign_up()).session
    assert bystander is not None

    reuse = await auth.refused("RefreshSession", RefreshSessionRequest(refresh_token=stolen))
    assert reuse == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_reused")
    # The refusal still committed the revocation: the newest token of that family no longer works.
    after = await auth.refused("RefreshSession", RefreshSessionRequest(refresh_token=newest.refresh_token))
    assert after == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_revoked")
    [(reason,)] = auth.db.execute(
        "SELECT revoked_reason FROM refresh_families WHERE family_id = %s",
        (uuid.UUID(claims(newest.access_token)["sid"]),),
    )
    assert reason == "refresh_token_reused"
    assert (await auth.refresh(bystander.refresh_token)).access_token


async def test_expired_and_unknown_refresh_tokens_are_refused(auth: Auth) -> None:
    signed = await auth.sign_up()
    assert signed.session is not None
    unknown = await auth.refused("RefreshSession", RefreshSessionRequest(refresh_token="made-up-token"))
    assert unknown == (grpc.StatusCode.UNAUTHENTICATED, "invalid_refresh_token")
    empty = await auth.refused("RefreshSession", RefreshSessionRequest(refresh_token=""))
    assert empty == (grpc.StatusCode.UNAUTHENTICATED, "invalid_refresh_token")

    auth.clock.advance(dt.timedelta(days=30, seconds=1))
    expired = await auth.refused(
        "RefreshSession", RefreshSessionRequest(refresh_token=signed.session.refresh_token)
    )
    assert expired == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_expired")
    # Refused, not spent: nothing about the token changed.
    assert auth.count("SELECT count(*) FROM refresh_tokens WHERE spent_at IS NOT NULL") == 0


async def test_refresh_token_lifetime_follows_the_setting(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    async with started_auth(postgres, kafka, auth_refresh_token_ttl_s=60) as auth:
        signed = await auth.sign_up()
        assert signed.session is not None
        auth.clock.advance(dt.timedelta(seconds=59))
        fresh = await auth.refresh(signed.session.refresh_token)
        auth.clock.advance(dt.timedelta(seconds=61))
        expired = await auth.refused(
            "RefreshSession", RefreshSessionRequest(refresh_token=fresh.refresh_token)
        )
        assert expired == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_expired")


async def test_log_out_ends_the_family_and_is_idempotent(auth: Auth) -> None:
    signed = await auth.sign_up()
    assert signed.session is not None
    session = await auth.refresh(signed.session.refresh_token)
    for _ in range(2):
        await auth.call("LogOut", LogOutRequest(refresh_token=session.refresh_token), LogOutResponse)
    await auth.call("LogOut", LogOutRequest(refresh_token="never-issued"), LogOutResponse)
    refused = await auth.refused("RefreshSession", RefreshSessionRequest(refresh_token=session.refresh_token))
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_revoked")
    [(reason,)] = auth.db.execute("SELECT revoked_reason FROM refresh_families")
    assert reason == "logged_out"


async def test_an_expired_access_token_is_refused(postgres: PostgresServer, kafka: KafkaBroker) -> None:
    # The service's clock runs 20 minutes behind: it issues tokens that, by real time, expired 5 minutes ago.
    clock = SettableClock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    async with started_auth(postgres, kafka, clock=clock) as auth:
        owner = await auth.owner()
        assert owner.session.access_token_expires_at is not None
        assert owner.session.access_token_expires_at < dt.datetime.now(dt.UTC)
        refused = await auth.refused(
            "ListMembers", ListMembersRequest(business_id=owner.business_id), token=owner.token
        )
        assert refused == (grpc.StatusCode.UNAUTHENTICATED, "token_expired")
        # The same request with a fresh token is served, so the refusal was about expiry alone.
        clock.set(dt.datetime.now(dt.UTC))
        fresh = await auth.refresh(owner.session.refresh_token)
        members = await auth.call(
            "ListMembers",
            ListMembersRequest(business_id=owner.business_id),
            ListMembersResponse,
            token=fresh.access_token,
        )
        assert [m.user_id for m in members.memberships] == [owner.user_id]


async def test_forged_identities_are_anonymous(auth: Auth) -> None:
    owner = await auth.owner()
    forged_header = [("x-apptremind-user-id", owner.user_id), ("x-apptremind-business-id", owner.business_id)]
    no_token = await auth.refused("GetMe", GetMeRequest(), metadata=forged_header)
    assert no_token == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    members_no_token = await auth.refused(
        "ListMembers", ListMembersRequest(business_id=owner.business_id), metadata=forged_header
    )
    assert members_no_token == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")

    # A well-formed token for the same user and business, signed by a key the service never published.
    other = SigningKeys()
    foreign = other.token(owner.user_id, {owner.business_id: "owner"})
    assert await auth.refused("GetMe", GetMeRequest(), token=foreign) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unknown_signing_key",
    )
    # The same, claiming the service's own key id: the signature gives it away.
    spoofed, _ = access_tokens.sign(
        other.private_key,
        kid_of(owner.token),
        owner.user_id,
        {owner.business_id: "owner"},
        session_id="forged",
        ttl=dt.timedelta(minutes=5),
        now=dt.datetime.now(dt.UTC),
    )
    refused = await auth.refused(
        "ListMembers", ListMembersRequest(business_id=owner.business_id), token=spoofed
    )
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "invalid_token")
    # The genuine token is accepted, so the refusals were about the forgeries.
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=owner.token)
    assert me.user is not None and me.user.user_id == owner.user_id
