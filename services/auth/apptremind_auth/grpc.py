"""The auth-service's gRPC servicer (apptremind.auth.v1.AuthService): proto in, domain call, proto out.

Each RPC opens one unit of work and hands it to AuthService; the caller's identity is the one the platform
interceptor verified from the access token (`current_caller`), never anything else in the metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.auth.v1 import (
    AcceptInvitationRequest,
    AcceptInvitationResponse,
    BusinessDraft,
    ChangePasswordRequest,
    ChangePasswordResponse,
    GetJwksRequest,
    GetJwksResponse,
    GetMeRequest,
    GetMeResponse,
    Invitation,
    InviteStaffRequest,
    InviteStaffResponse,
    IssueServiceTokenRequest,
    IssueServiceTokenResponse,
    ListMembersRequest,
    ListMembersResponse,
    LogInRequest,
    LogInResponse,
    LogOutRequest,
    LogOutResponse,
    Membership,
    RefreshSessionRequest,
    RefreshSessionResponse,
    Role,
    RotateSigningKeyRequest,
    RotateSigningKeyResponse,
    Session,
    SignUpRequest,
    SignUpResponse,
    User,
)
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.errors import DomainError
from apptremind_platform.identity import ADMIN, OWNER, STAFF, current_caller

from . import model
from .service import AuthService, CommitThenRefuse

SERVICE = "apptremind.auth.v1.AuthService"
ADMIN_TOKEN_METADATA = "x-apptremind-admin-token"

ROLE_TO_PROTO = {OWNER: Role.OWNER, ADMIN: Role.ADMIN, STAFF: Role.STAFF}
PROTO_TO_ROLE = {proto: name for name, proto in ROLE_TO_PROTO.items()}


@asynccontextmanager
async def _unit_of_work(pool: AsyncConnectionPool) -> AsyncIterator[Conn]:
    """The platform's unit of work, except that a CommitThenRefuse commits before its error is raised."""
    refusal: DomainError | None = None
    async with unit_of_work(pool) as conn:
        try:
            yield conn
        except CommitThenRefuse as exc:
            refusal = exc.error
    if refusal is not None:
        raise refusal


def _user(user: model.User) -> User:
    return User(user_id=str(user.user_id), email=user.email, created_at=user.created_at)


def _session(session: model.Session) -> Session:
    return Session(
        access_token=session.access_token,
        access_token_expires_at=session.access_token_expires_at,
        refresh_token=session.refresh_token,
        refresh_token_expires_at=session.refresh_token_expires_at,
    )


def _membership(membership: model.Membership) -> Membership:
    return Membership(
        business_id=str(membership.business_id),
        user_id=str(membership.user_id),
        role=ROLE_TO_PROTO[membership.role],
    )


def _invitation(invitation: model.Invitation) -> Invitation:
    return Invitation(
        invitation_id=str(invitation.invitation_id),
        business_id=str(invitation.business_id),
        email=invitation.email,
        role=ROLE_TO_PROTO[invitation.role],
        expires_at=invitation.expires_at,
        accepted_at=invitation.accepted_at,
    )


def _draft(draft: BusinessDraft | None) -> model.BusinessDraft | None:
    if draft is None:
        return None
    return model.BusinessDraft(draft.name, draft.slug, draft.time_zone, draft.locale, draft.currency)


def _metadata_value(context: Any, key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class AuthServiceServicer:
    def __init__(self, pool: AsyncConnectionPool, service: AuthService) -> None:
        self._pool = pool
        self._service = service

    async def get_jwks(self, request: GetJwksRequest, context: Any) -> GetJwksResponse:
        async with _unit_of_work(self._pool) as conn:
            return GetJwksResponse(jwks_json=await self._service.jwks(conn))

    async def sign_up(self, request: SignUpRequest, context: Any) -> SignUpResponse:
        async with _unit_of_work(self._pool) as conn:
            user, session = await self._service.sign_up(
                conn, request.email, request.password, _draft(request.business)
            )
        return SignUpResponse(user=_user(user), session=_session(session))

    async def log_in(self, request: LogInRequest, context: Any) -> LogInResponse:
        async with _unit_of_work(self._pool) as conn:
            user, session = await self._service.log_in(conn, request.email, request.password)
        return LogInResponse(user=_user(user), session=_session(session))

    async def refresh_session(self, request: RefreshSessionRequest, context: Any) -> RefreshSessionResponse:
        async with _unit_of_work(self._pool) as conn:
            session = await self._service.refresh_session(conn, request.refresh_token)
        return RefreshSessionResponse(session=_session(session))

    async def log_out(self, request: LogOutRequest, context: Any) -> LogOutResponse:
        async with _unit_of_work(self._pool) as conn:
            await self._service.log_out(conn, request.refresh_token)
        return LogOutResponse()

    async def change_password(self, request: ChangePasswordRequest, context: Any) -> ChangePasswordResponse:
        async with _unit_of_work(self._pool) as conn:
            await self._service.change_password(
                conn, current_caller.get(), request.current_password, request.new_password
            )
        return ChangePasswordResponse()

    async def get_me(self, request: GetMeRequest, context: Any) -> GetMeResponse:
        async with _unit_of_work(self._pool) as conn:
            user, memberships = await self._service.get_me(conn, current_caller.get())
        return GetMeResponse(user=_user(user), memberships=[_membership(m) for m in memberships])

    async def invite_staff(self, request: InviteStaffRequest, context: Any) -> InviteStaffResponse:
        async with _unit_of_work(self._pool) as conn:
            invitation, token = await self._service.invite_staff(
                conn,
                current_caller.get(),
                request.business_id,
                request.email,
                PROTO_TO_ROLE.get(request.role, ""),
            )
        return InviteStaffResponse(invitation=_invitation(invitation), token=token)

    async def accept_invitation(
        self, request: AcceptInvitationRequest, context: Any
    ) -> AcceptInvitationResponse:
        async with _unit_of_work(self._pool) as conn:
            membership, session = await self._service.accept_invitation(
                conn, current_caller.get(), request.token, request.password
            )
        return AcceptInvitationResponse(
            membership=_membership(membership), session=_session(session) if session else None
        )

    async def list_members(self, request: ListMembersRequest, context: Any) -> ListMembersResponse:
        async with _unit_of_work(self._pool) as conn:
            memberships, next_token = await self._service.list_members(
                conn, current_caller.get(), request.business_id, request.page_size, request.page_token
            )
        return ListMembersResponse(
            memberships=[_membership(m) for m in memberships], next_page_token=next_token
        )

    async def issue_service_token(
        self, request: IssueServiceTokenRequest, context: Any
    ) -> IssueServiceTokenResponse:
        async with _unit_of_work(self._pool) as conn:
            token, expires_at = await self._service.issue_service_token(
                conn, request.client_id, request.client_secret
            )
        return IssueServiceTokenResponse(access_token=token, expires_at=expires_at)

    async def rotate_signing_key(
        self, request: RotateSigningKeyRequest, context: Any
    ) -> RotateSigningKeyResponse:
        async with _unit_of_work(self._pool) as conn:
            kid = await self._service.rotate_signing_key(conn, _metadata_value(context, ADMIN_TOKEN_METADATA))
        return RotateSigningKeyResponse(kid=kid)
