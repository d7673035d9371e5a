"""ListMembers through the real auth-service: cursor pagination ordered by user_id, and its bad input."""

from __future__ import annotations

import grpc

from apptremind_gen.apptremind.auth.v1 import (
    AcceptInvitationRequest,
    AcceptInvitationResponse,
    InviteStaffRequest,
    InviteStaffResponse,
    ListMembersRequest,
    ListMembersResponse,
    Role,
)
from tests.integration.auth.harness import Auth, Owner, new_email


async def add_staff(auth: Auth, owner: Owner, count: int) -> list[str]:
    user_ids = []
    for _ in range(count):
        invited = await auth.call(
            "InviteStaff",
            InviteStaffRequest(business_id=owner.business_id, email=new_email("staff"), role=Role.STAFF),
            InviteStaffResponse,
            token=owner.token,
        )
        accepted = await auth.call(
            "AcceptInvitation",
            AcceptInvitationRequest(token=invited.token, password="staff member password"),
            AcceptInvitationResponse,
        )
        assert accepted.membership is not None
        user_ids.append(accepted.membership.user_id)
    return user_ids


async def list_page(
    auth: Auth, owner: Owner, page_size: int = 0, page_token: str = ""
) -> ListMembersResponse:
    return await auth.call(
        "ListMembers",
        ListMembersRequest(business_id=owner.business_id, page_size=page_size, page_token=page_token),
        ListMembersResponse,
        token=owner.token,
    )


async def test_pages_walk_every_member_once_in_user_id_order(auth: Auth) -> None:
    owner = await auth.owner()
    other = await auth.owner()
    staff = await add_staff(auth, owner, 4)
    await add_staff(auth, other, 1)
    expected = sorted([owner.user_id, *staff])

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await list_page(auth, owner, page_size=2, page_token=token)
        pages.append([m.user_id for m in page.memberships])
        assert all(m.business_id == owner.business_id for m in page.memberships)
        token = page.next_page_token
        if not token:
            break
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]

    # An exact multiple of the page size ends without an empty trailing page.
    first = await list_page(auth, owner, page_size=5)
    assert [m.user_id for m in first.memberships] == expected and first.next_page_token == ""
    # The default page size covers them all.
    assert [m.user_id for m in (await list_page(auth, owner)).memberships] == expected


async def test_bad_page_input_is_refused(auth: Auth) -> None:
    owner = await auth.owner()
    other = await auth.owner()
    await add_staff(auth, owner, 2)
    await add_staff(auth, other, 2)
    foreign_token = (
        await auth.call(
            "ListMembers",
            ListMembersRequest(business_id=other.business_id, page_size=1),
            ListMembersResponse,
            token=other.token,
        )
    ).next_page_token
    assert foreign_token

    cases = [
        ListMembersRequest(business_id=owner.business_id, page_size=-1),
        ListMembersRequest(business_id=owner.business_id, page_token="%%%"),
        ListMembersRequest(business_id=owner.business_id, page_token="c2hvcnQ"),
        # A cursor from another business's listing is not valid in this one.
        ListMembersRequest(business_id=owner.business_id, page_token=foreign_token),
    ]
    reasons = [await auth.refused("ListMembers", request, token=owner.token) for request in cases]
    assert reasons == [
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_size"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token"),
    ]
    # The foreign cursor does work where it came from.
    page = await auth.call(
        "ListMembers",
        ListMembersRequest(business_id=other.business_id, page_size=1, page_token=foreign_token),
        ListMembersResponse,
        token=other.token,
    )
    assert len(page.memberships) == 1


async def test_any_member_may_list_and_page_size_is_capped(auth: Auth) -> None:
    owner = await auth.owner()
    invited = await auth.call(
        "InviteStaff",
        InviteStaffRequest(business_id=owner.business_id, email=new_email("staff"), role=Role.STAFF),
        InviteStaffResponse,
        token=owner.token,
    )
    staff = await auth.call(
        "AcceptInvitation",
        AcceptInvitationRequest(token=invited.token, password="staff member password"),
        AcceptInvitationResponse,
    )
    assert staff.session is not None
    # Test setup straight in the database: 250 more members without 250 password hashes.
    auth.db.execute(
        "WITH new AS (INSERT INTO users (user_id, email, password_hash, created_at) "
        "SELECT gen_random_uuid(), 'bulk-' || i || '@example.com', 'unused', now() "
        "FROM generate_series(1, 250) AS i RETURNING user_id) "
        "INSERT INTO memberships (business_id, user_id, role, granted_at) "
        "SELECT %s, user_id, 'staff', now() FROM new",
        (owner.business_id,),
    )

    capped = await auth.call(
        "ListMembers",
        ListMembersRequest(business_id=owner.business_id, page_size=1000),
        ListMembersResponse,
        token=staff.session.access_token,
    )
    assert len(capped.memberships) == 200 and capped.next_page_token
    rest = await auth.call(
        "ListMembers",
        ListMembersRequest(business_id=owner.business_id, page_size=1000, page_token=capped.next_page_token),
        ListMembersResponse,
        token=staff.session.access_token,
    )
    assert len(rest.memberships) == 252 - 200 and rest.next_page_token == ""
    default = await list_page(auth, owner)
    assert len(default.memberships) == 50
