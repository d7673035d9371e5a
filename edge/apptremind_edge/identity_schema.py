"""Identity operations: sign-up, sessions, the caller, invitations (auth-service behind them)."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from apptremind_gen.apptremind.auth import v1 as auth
from apptremind_gen.apptremind.business import v1 as business

from .context import EdgeContext
from .errors import BAD_USER_INPUT, CONFLICT, NOT_FOUND, UNAVAILABLE, edge_error
from .types import ROLE_TO_PROTO, Invitation, Membership, Role, Session, User

Info = strawberry.Info[EdgeContext, None]


@strawberry.input
class SignUpInput:
    email: str
    password: str
    business_name: str
    business_slug: str
    time_zone: str
    locale: str = "en"
    currency: str = "EUR"


@strawberry.type
class AuthPayload:
    user: User
    session: Session


@strawberry.type
class SignUpPayload:
    user: User
    session: Session
    business_pending: bool = strawberry.field(
        description=(
            "The business is created asynchronously by the signup saga; poll `me` until a membership "
            "appears, then call `refreshSession` so the access token carries it."
        )
    )


@strawberry.type
class Me:
    user: User
    memberships: list[Membership]


@strawberry.type
class InviteStaffPayload:
    invitation: Invitation
    token: str = strawberry.field(description="The invitation token (until e-mail delivery exists).")


@strawberry.type
class AcceptInvitationPayload:
    membership: Membership
    session: Session | None


async def refuse_taken_slug(info: Info, slug: str) -> None:
    """A clear `slug_taken` before anything is created. Two sign-ups racing for one slug both pass this;
    the saga then gives the later one a suffixed slug (ADR 0007). If the business-service is down the
    check is skipped: sign-up must not depend on it."""
    try:
        await info.context.call(
            "business",
            "GetBusinessBySlug",
            business.GetBusinessBySlugRequest(slug=slug.strip().lower()),
            business.GetBusinessBySlugResponse,
        )
    except GraphQLError as error:
        if (error.extensions or {}).get("code") in (NOT_FOUND, UNAVAILABLE, BAD_USER_INPUT):
            return
        raise
    raise edge_error(f"the address {slug!r} is taken", CONFLICT, reason="slug_taken")


@strawberry.type
class IdentityQuery:
    # The signed-in user and their memberships, fresh from the auth-service.
    @strawberry.field
    async def me(self, info: Info) -> Me:
        await info.context.require_caller()
        response = await info.context.call("auth", "GetMe", auth.GetMeRequest(), auth.GetMeResponse)
        return Me(user=User.of(response.user), memberships=[Membership.of(m) for m in response.memberships])


@strawberry.type
class IdentityMutation:
    @strawberry.mutation
    async def sign_up(self, info: Info, input: SignUpInput) -> SignUpPayload:
        info.context.limits.signup_per_ip.check(info.context.client_ip, "sign-up")
        info.context.limits.signup_per_account.check(input.email.strip().lower(), "sign-up")
        await refuse_taken_slug(info, input.business_slug)
        request = auth.SignUpRequest(
            email=input.email,
            password=input.password,
            business=auth.BusinessDraft(
                name=input.business_name,
                slug=input.business_slug,
                time_zone=input.time_zone,
                locale=input.locale,
                currency=input.currency,
            ),
        )
        response = await info.context.call("auth", "SignUp", request, auth.SignUpResponse)
        return SignUpPayload(
            user=User.of(response.user), session=Session.of(response.session), business_pending=True
        )

    @strawberry.mutation
    async def log_in(self, info: Info, email: str, password: str) -> AuthPayload:
        info.context.limits.login_per_ip.check(info.context.client_ip, "log-in")
        info.context.limits.login_per_account.check(email.strip().lower(), "log-in")
        response = await info.context.call(
            "auth", "LogIn", auth.LogInRequest(email=email, password=password), auth.LogInResponse
        )
        return AuthPayload(user=User.of(response.user), session=Session.of(response.session))

    @strawberry.mutation
    async def refresh_session(self, info: Info, refresh_token: str) -> Session:
        response = await info.context.call(
            "auth",
            "RefreshSession",
            auth.RefreshSessionRequest(refresh_token=refresh_token),
            auth.RefreshSessionResponse,
        )
        return Session.of(response.session)

    @strawberry.mutation
    async def log_out(self, info: Info, refresh_token: str) -> bool:
        await info.context.call(
            "auth", "LogOut", auth.LogOutRequest(refresh_token=refresh_token), auth.LogOutResponse
        )
        return True

    @strawberry.mutation
    async def invite_staff(
        self, info: Info, business_id: strawberry.ID, email: str, role: Role
    ) -> InviteStaffPayload:
        await info.context.require_caller()
        response = await info.context.call(
            "auth",
            "InviteStaff",
            auth.InviteStaffRequest(business_id=business_id, email=email, role=ROLE_TO_PROTO[role]),
            auth.InviteStaffResponse,
        )
        return InviteStaffPayload(invitation=Invitation.of(response.invitation), token=response.token)

    @strawberry.mutation
    async def accept_invitation(
        self, info: Info, token: str, password: str | None = None
    ) -> AcceptInvitationPayload:
        response = await info.context.call(
            "auth",
            "AcceptInvitation",
            auth.AcceptInvitationRequest(token=token, password=password or ""),
            auth.AcceptInvitationResponse,
        )
        return AcceptInvitationPayload(
            membership=Membership.of(response.membership),
            session=Session.of(response.session) if response.session else None,
        )
