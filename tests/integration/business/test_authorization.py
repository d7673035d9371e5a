"""Tenancy and identity: every RPC refuses a member of business A reaching into business B, a staff member
changing anything, and callers without a valid token (GetBusinessBySlug excepted); refusals write nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

import betterproto2
import grpc
import pytest

from apptremind_business.grpc import SERVICE
from apptremind_gen.apptremind.business import v1 as pb
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_platform.grpc_bridge import service_methods
from tests.fixtures.tokens import SigningKeys
from tests.integration.business.support import Harness, Tenant, at, expect_error

DENIED, NOT_FOUND = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class Ids:
    tenant: Tenant
    staff_id: str
    service_id: str

    @property
    def bid(self) -> str:
        return self.tenant.business_id


def _hours(business_id: str, staff_id: str) -> pb.SetWorkingHoursRequest:
    return pb.SetWorkingHoursRequest(
        business_id=business_id,
        staff_id=staff_id,
        hours=[pb.WeeklyInterval(weekday=1, start_time="08:00", end_time="20:00")],
    )


# One valid request per RPC, aimed at the business, staff member and service given. GetBusinessBySlug is
# public by design and has no business id to aim with: it is covered by its own test below.
Build = Callable[[Ids], betterproto2.Message]
REQUESTS: dict[str, tuple[Build, bool]] = {
    # RPC: (request, whether it changes anything)
    "GetBusiness": (lambda t: pb.GetBusinessRequest(business_id=t.bid), False),
    "UpdateBusiness": (lambda t: pb.UpdateBusinessRequest(business_id=t.bid, name="Taken over"), True),
    "CreateStaff": (lambda t: pb.CreateStaffRequest(business_id=t.bid, name="Mole"), True),
    "ListStaff": (lambda t: pb.ListStaffRequest(business_id=t.bid), False),
    "SetWorkingHours": (lambda t: _hours(t.bid, t.staff_id), True),
    "GetWorkingHours": (lambda t: pb.GetWorkingHoursRequest(business_id=t.bid, staff_id=t.staff_id), False),
    "AddDateOverride": (
        lambda t: pb.AddDateOverrideRequest(
            business_id=t.bid,
            staff_id=t.staff_id,
            kind=pb.DateOverrideKind.TIME_OFF,
            start_time=at(4, 0),
            end_time=at(5, 0),
        ),
        True,
    ),
    "ListDateOverrides": (lambda t: pb.ListDateOverridesRequest(business_id=t.bid), False),
    "CreateService": (
        lambda t: pb.CreateServiceRequest(
            business_id=t.bid, name="Free", duration_minutes=30, price_minor=0, staff_ids=[t.staff_id]
        ),
        True,
    ),
    "UpdateService": (
        lambda t: pb.UpdateServiceRequest(business_id=t.bid, service_id=t.service_id, price_minor=1),
        True,
    ),
    "ListServices": (lambda t: pb.ListServicesRequest(business_id=t.bid, include_inactive=True), False),
    "GetReminderPolicy": (lambda t: pb.GetReminderPolicyRequest(business_id=t.bid), False),
    "UpdateReminderPolicy": (
        lambda t: pb.UpdateReminderPolicyRequest(
            policy=pb.ReminderPolicy(business_id=t.bid, offsets_minutes=[5], channels=[Channel.SMS])
        ),
        True,
    ),
}

# The same RPCs aimed at A's business but carrying B's staff or service ids.
FOREIGN_IDS: dict[str, tuple[Callable[[Ids, Ids], betterproto2.Message], str]] = {
    "SetWorkingHours": (lambda a, b: _hours(a.bid, b.staff_id), "staff_not_found"),
    "GetWorkingHours": (
        lambda a, b: pb.GetWorkingHoursRequest(business_id=a.bid, staff_id=b.staff_id),
        "staff_not_found",
    ),
    "AddDateOverride": (
        lambda a, b: pb.AddDateOverrideRequest(
            business_id=a.bid,
            staff_id=b.staff_id,
            kind=pb.DateOverrideKind.TIME_OFF,
            start_time=at(4, 0),
            end_time=at(5, 0),
        ),
        "staff_not_found",
    ),
    "ListDateOverrides": (
        lambda a, b: pb.ListDateOverridesRequest(business_id=a.bid, staff_id=b.staff_id),
        "staff_not_found",
    ),
    "CreateService": (
        lambda a, b: pb.CreateServiceRequest(
            business_id=a.bid,
            name="Mixed",
            duration_minutes=30,
            price_minor=0,
            staff_ids=[a.staff_id, b.staff_id],
        ),
        "staff_not_found",
    ),
    "UpdateService": (
        lambda a, b: pb.UpdateServiceRequest(business_id=a.bid, service_id=b.service_id, price_minor=1),
        "service_not_found",
    ),
}


def response_type(method: str) -> type[betterproto2.Message]:
    cls: type[betterproto2.Message] = getattr(pb, f"{method}Response")
    return cls


async def populated(harness: Harness) -> Ids:
    tenant = await harness.signup()
    staff_id = await harness.add_staff(tenant)
    service_id = await harness.add_service(tenant, [staff_id])
    await harness.call(
        "AddDateOverride",
        pb.AddDateOverrideRequest(
            business_id=tenant.business_id,
            kind=pb.DateOverrideKind.HOLIDAY,
            start_time=at(1, 0),
            end_time=at(2, 0),
        ),
        pb.AddDateOverrideResponse,
        tenant.owner,
    )
    return Ids(tenant, staff_id, service_id)


@pytest.fixture(scope="module")
async def two(harness: Harness) -> tuple[Ids, Ids]:
    return await populated(harness), await populated(harness)


def test_the_tables_cover_every_rpc() -> None:
    assert set(REQUESTS) | {"GetBusinessBySlug"} == set(service_methods(SERVICE))


@pytest.mark.parametrize("method", list(REQUESTS))
async def test_owner_of_a_cannot_reach_business_b(
    harness: Harness, two: tuple[Ids, Ids], method: str
) -> None:
    a, b = two
    build, _ = REQUESTS[method]
    before = harness.snapshot()
    await expect_error(
        harness.call(method, build(b), response_type(method), a.tenant.owner), DENIED, "not_a_member"
    )
    assert harness.snapshot() == before
    # The very same request is fine for B's owner: the refusal is about who asks.
    await harness.call(method, build(b), response_type(method), b.tenant.owner)


@pytest.mark.parametrize("method", list(FOREIGN_IDS))
async def test_ids_of_business_b_inside_a_request_for_a_are_not_found(
    harness: Harness, two: tuple[Ids, Ids], method: str
) -> None:
    a, b = two
    build, reason = FOREIGN_IDS[method]
    before = harness.snapshot()
    await expect_error(
        harness.call(method, build(a, b), response_type(method), a.tenant.owner), NOT_FOUND, reason
    )
    assert harness.snapshot() == before


async def test_public_slug_lookup_shows_only_the_public_profile(
    harness: Harness, two: tuple[Ids, Ids]
) -> None:
    a, b = two
    response = await harness.call(
        "GetBusinessBySlug",
        pb.GetBusinessBySlugRequest(slug=b.tenant.slug),
        pb.GetBusinessBySlugResponse,
        a.tenant.owner,
    )
    assert response.business is not None
    assert (response.business.business_id, response.business.owner_user_id) == (b.bid, "")


@pytest.mark.parametrize("method", [m for m, (_, writes) in REQUESTS.items() if writes])
async def test_staff_role_cannot_change_anything(harness: Harness, two: tuple[Ids, Ids], method: str) -> None:
    a, _ = two
    staff = harness.metadata("0190a0a0-0000-7000-8000-00000000057a", {a.bid: "staff"})
    build, _ = REQUESTS[method]
    before = harness.snapshot()
    await expect_error(
        harness.call(method, build(a), response_type(method), staff), DENIED, "insufficient_role"
    )
    assert harness.snapshot() == before


@pytest.mark.parametrize("method", [m for m, (_, writes) in REQUESTS.items() if not writes])
async def test_staff_role_can_read(harness: Harness, two: tuple[Ids, Ids], method: str) -> None:
    a, _ = two
    staff = harness.metadata("0190a0a0-0000-7000-8000-00000000057a", {a.bid: "staff"})
    build, _ = REQUESTS[method]
    await harness.call(method, build(a), response_type(method), staff)


def _tampered(token: str, business_id: str) -> str:
    """The token with its claims rewritten to grant ownership of business_id, the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["mem"] = {business_id: "owner"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


IDENTITIES: dict[str, tuple[Callable[[Harness, Ids], list[tuple[str, str]] | None], str]] = {
    "no token": (lambda h, a: None, "unauthenticated"),
    "identity headers without a token": (
        lambda h, a: [("x-user-id", a.tenant.owner_user_id), ("x-business-id", a.bid), ("x-role", "owner")],
        "unauthenticated",
    ),
    "not a bearer token": (lambda h, a: [("authorization", "Basic b3duZXI6b3duZXI=")], "unauthenticated"),
    "garbage token": (lambda h, a: [("authorization", "Bearer not.a.jwt")], "malformed_token"),
    "signed by an unknown key": (
        lambda h, a: list(SigningKeys().caller(a.tenant.owner_user_id, {a.bid: "owner"}).to_metadata()),
        "unknown_signing_key",
    ),
    "claims rewritten": (
        lambda h, a: [
            (
                "authorization",
                "Bearer " + _tampered(h.keys.token("0190a0a0-0000-7000-8000-0000000000ff", {}), a.bid),
            )
        ],
        "invalid_token",
    ),
    "expired": (
        lambda h, a: [
            (
                "authorization",
                "Bearer "
                + h.keys.token(
                    a.tenant.owner_user_id,
                    {a.bid: "owner"},
                    ttl=dt.timedelta(minutes=5),
                    now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                ),
            )
        ],
        "token_expired",
    ),
}


@pytest.mark.parametrize("identity", list(IDENTITIES))
@pytest.mark.parametrize("method", list(REQUESTS))
async def test_without_a_valid_token_every_rpc_but_the_public_one_is_refused(
    harness: Harness, two: tuple[Ids, Ids], method: str, identity: str
) -> None:
    a, _ = two
    make_metadata, reason = IDENTITIES[identity]
    build, _ = REQUESTS[method]
    before = harness.snapshot()
    await expect_error(
        harness.call(method, build(a), response_type(method), make_metadata(harness, a)),
        UNAUTHENTICATED,
        reason,
    )
    assert harness.snapshot() == before


@pytest.mark.parametrize("identity", list(IDENTITIES))
async def test_the_public_slug_lookup_needs_no_valid_token(
    harness: Harness, two: tuple[Ids, Ids], identity: str
) -> None:
    a, _ = two
    make_metadata, _ = IDENTITIES[identity]
    response = await harness.call(
        "GetBusinessBySlug",
        pb.GetBusinessBySlugRequest(slug=a.tenant.slug),
        pb.GetBusinessBySlugResponse,
        make_metadata(harness, a),
    )
    assert response.business is not None
    assert response.business.business_id == a.bid
