"""Staff invitations through the real auth-service: invite, accept (new or existing account), expiry,
single use, e-mail binding, roles and tenant isolation."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from apptremind_gen.apptremind.auth.v1 import (
    AcceptInvitationRequest,
    AcceptInvitationResponse,
    GetMeRequest,
    GetMeResponse,
    InviteStaffRequest,
    InviteStaffResponse,
    ListMembersRequest,
    ListMembersResponse,
    Role,
)
from apptremind_gen.apptremind.events.auth.v1 import MembershipGranted, UserCreated
from tests.integration.auth.harness import PASSWORD, Auth, Owner, claims, new_email

STAFF_PASSWORD = "staff member password"


async def invite(auth: Auth, owner: Owner, email: str, role: Role = Role.STAFF) -> InviteStaffResponse:
    return await auth.call(
        "InviteStaff",
        InviteStaffRequest(business_id=owner.business_id, email=email, role=role),
        InviteStaffResponse,
        token=owner.token,
    )


async def test_invitee_without_an_account_accepts_with_a_password(auth: Auth) -> None:
    owner = await auth.owner()
    email = new_email("staff")
    invited = await invite(auth, owner, f" {email.upper()}")
    assert invited.invitation is not None and invited.token
    assert (invited.invitation.email, invited.invitation.role) == (email, Role.STAFF)
    assert invited.invitation.business_id == owner.business_id
    assert invited.invitation.accepted_at is None
    # Only a digest of the one-time token is stored.
    assert (
        auth.count("SELECT count(*) FROM invitations WHERE token_hash = %s", (invited.token.encode(),)) == 0
    )
    before = len(auth.outbox())

    accepted = await auth.call(
        "AcceptInvitation",
        AcceptInvitationRequest(token=invited.token, password=STAFF_PASSWORD),
        AcceptInvitationResponse,
    )
    assert accepted.membership is not None and accepted.session is not None
    assert (accepted.membership.business_id, accepted.membership.role) == (owner.business_id, Role.STAFF)
    staff_id = accepted.membership.user_id
    assert claims(accepted.session.access_token)["mem"] == {owner.business_id: "staff"}
    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=accepted.session.access_token)
    assert me.user is not None and (me.user.user_id, me.user.email) == (staff_id, email)

    members = await auth.call(
        "ListMembers",
        ListMembersRequest(business_id=owner.business_id),
        ListMembersResponse,
        token=owner.token,
    )
    assert sorted((m.user_id, m.role) for m in members.memberships) == sorted(
        [(owner.user_id, Role.OWNER), (staff_id, Role.STAFF)]
    )
    # A new account (no business to create) and the membership, both announced.
    [(created_topic, created), (granted_topic, granted)] = auth.outbox()[before:]
    assert (created_topic, granted_topic) == ("auth.user.created.v1", "auth.membership.granted.v1")
    assert isinstance(created, UserCreated) and created.business is None and created.email == email
    assert isinstance(granted, MembershipGranted)
    assert (granted.business_id, granted.user_id, granted.role) == (owner.business_id, staff_id, "staff")

    # One-time: the same token again is refused and changes nothing.
    again = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=invited.token, password=STAFF_PASSWORD)
    )
    assert again == (grpc.StatusCode.FAILED_PRECONDITION, "invitation_used")
    assert auth.count("SELECT count(*) FROM memberships") == 2


async def test_invitee_with_an_account_accepts_while_logged_in(auth: Auth) -> None:
    owner = await auth.owner()
    colleague = await auth.owner()
    invited = await invite(auth, owner, colleague.email, Role.ADMIN)

    # Anonymous acceptance for an existing account would create a second identity: refused.
    anonymous = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=invited.token, password=PASSWORD)
    )
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "log_in_to_accept")

    accepted = await auth.call(
        "AcceptInvitation",
        AcceptInvitationRequest(token=invited.token),
        AcceptInvitationResponse,
        token=colleague.token,
    )
    assert accepted.membership is not None
    assert (accepted.membership.user_id, accepted.membership.role) == (colleague.user_id, Role.ADMIN)
    assert accepted.session is None
    session = await auth.refresh(colleague.session.refresh_token)
    assert claims(session.access_token)["mem"] == {colleague.business_id: "owner", owner.business_id: "admin"}


async def test_expired_unknown_and_mismatched_invitations_are_refused_and_change_nothing(auth: Auth) -> None:
    owner = await auth.owner()
    stranger = await auth.owner()
    invited = await invite(auth, owner, new_email("staff"))
    memberships = auth.count("SELECT count(*) FROM memberships")
    users = auth.count("SELECT count(*) FROM users")

    mismatch = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=invited.token), token=stranger.token
    )
    assert mismatch == (grpc.StatusCode.PERMISSION_DENIED, "invitation_email_mismatch")
    for token in ("", "garbage", f"{owner.business_id}.not-the-secret", invited.token + "x"):
        unknown = await auth.refused(
            "AcceptInvitation", AcceptInvitationRequest(token=token, password=STAFF_PASSWORD)
        )
        assert unknown == (grpc.StatusCode.NOT_FOUND, "invitation_not_found"), token
    no_password = await auth.refused("AcceptInvitation", AcceptInvitationRequest(token=invited.token))
    assert no_password == (grpc.StatusCode.INVALID_ARGUMENT, "password_required")
    weak = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=invited.token, password="short")
    )
    assert weak == (grpc.StatusCode.INVALID_ARGUMENT, "weak_password")

    auth.clock.advance(dt.timedelta(days=7, seconds=1))
    expired = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=invited.token, password=STAFF_PASSWORD)
    )
    assert expired == (grpc.StatusCode.FAILED_PRECONDITION, "invitation_expired")

    assert auth.count("SELECT count(*) FROM memberships") == memberships
    assert auth.count("SELECT count(*) FROM users") == users
    assert auth.count("SELECT count(*) FROM invitations WHERE accepted_at IS NOT NULL") == 0


async def test_who_may_invite_whom(auth: Auth) -> None:
    owner = await auth.owner()
    admin_invite = await invite(auth, owner, new_email("admin"), Role.ADMIN)
    admin = await auth.call(
        "AcceptInvitation",
        AcceptInvitationRequest(token=admin_invite.token, password=STAFF_PASSWORD),
        AcceptInvitationResponse,
    )
    staff_invite = await invite(auth, owner, new_email("staff"))
    staff = await auth.call(
        "AcceptInvitation",
        AcceptInvitationRequest(token=staff_invite.token, password=STAFF_PASSWORD),
        AcceptInvitationResponse,
    )
    assert admin.session is not None and staff.session is not None
    invitations = auth.count("SELECT count(*) FROM invitations")

    def request(role: Role, email: str | None = None) -> InviteStaffRequest:
        return InviteStaffRequest(business_id=owner.business_id, email=email or new_email(), role=role)

    cases = [
        (
            admin.session.access_token,
            request(Role.ADMIN),
            (grpc.StatusCode.PERMISSION_DENIED, "insufficient_role"),
        ),
        (
            staff.session.access_token,
            request(Role.STAFF),
            (grpc.StatusCode.PERMISSION_DENIED, "insufficient_role"),
        ),
        (owner.token, request(Role.OWNER), (grpc.StatusCode.INVALID_ARGUMENT, "invalid_role")),
        (owner.token, request(Role.UNSPECIFIED), (grpc.StatusCode.INVALID_ARGUMENT, "invalid_role")),
        (owner.token, request(Role.STAFF, "nobody"), (grpc.StatusCode.INVALID_ARGUMENT, "invalid_email")),
        (owner.token, request(Role.STAFF, owner.email), (grpc.StatusCode.ALREADY_EXISTS, "already_a_member")),
        ("", request(Role.STAFF), (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")),
    ]
    for token, req, expected in cases:
        assert await auth.refused("InviteStaff", req, token=token) == expected, (req, expected)
    assert auth.count("SELECT count(*) FROM invitations") == invitations

    # An admin may invite staff.
    by_admin = await auth.call(
        "InviteStaff", request(Role.STAFF), InviteStaffResponse, token=admin.session.access_token
    )
    assert by_admin.invitation is not None and by_admin.invitation.role == Role.STAFF


async def test_a_member_of_one_business_cannot_touch_another(auth: Auth) -> None:
    mine = await auth.owner()
    theirs = await auth.owner()
    their_invite = await invite(auth, theirs, new_email("staff"))
    snapshot = {
        table: auth.count(f"SELECT count(*) FROM {table}")
        for table in ("invitations", "memberships", "users", "outbox", "refresh_tokens")
    }

    for role in (Role.STAFF, Role.ADMIN):
        refused = await auth.refused(
            "InviteStaff",
            InviteStaffRequest(business_id=theirs.business_id, email=new_email(), role=role),
            token=mine.token,
        )
        assert refused == (grpc.StatusCode.PERMISSION_DENIED, "not_a_member")
    listed = await auth.refused(
        "ListMembers", ListMembersRequest(business_id=theirs.business_id), token=mine.token
    )
    assert listed == (grpc.StatusCode.PERMISSION_DENIED, "not_a_member")
    # Ids that name no business at all get the same answer as a foreign one: nothing to probe.
    for business_id in ("not-a-business", str(uuid.uuid4())):
        unknown = await auth.refused(
            "ListMembers", ListMembersRequest(business_id=business_id), token=mine.token
        )
        assert unknown == (grpc.StatusCode.PERMISSION_DENIED, "not_a_member")
    # Their invitation cannot be taken by me either (it names another e-mail).
    taken = await auth.refused(
        "AcceptInvitation", AcceptInvitationRequest(token=their_invite.token), token=mine.token
    )
    assert taken == (grpc.StatusCode.PERMISSION_DENIED, "invitation_email_mismatch")

    assert snapshot == {table: auth.count(f"SELECT count(*) FROM {table}") for table in snapshot}
    # My own business answers the same calls, so the refusals above were about the tenant.
    mine_listed = await auth.call(
        "ListMembers", ListMembersRequest(business_id=mine.business_id), ListMembersResponse, token=mine.token
    )
    assert [m.user_id for m in mine_listed.memberships] == [mine.user_id]
