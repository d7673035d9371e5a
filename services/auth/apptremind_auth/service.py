"""The auth-service's use cases: accounts, sessions, service tokens, signing keys, memberships, invitations.

Each method runs inside the unit of work its caller (the gRPC servicer or the consumer) opened, so a
domain change and its outbox event commit together; no SQL here, only the Repository. Time comes from the
injected Clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from apptremind_platform import access_tokens, outbox, pagination
from apptremind_platform.clock import Clock
from apptremind_platform.db import Conn
from apptremind_platform.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from apptremind_platform.identity import ADMIN, OWNER, Caller
from apptremind_platform.ids import new_id

from . import events
from .keys import KeyRing
from .model import (
    BusinessDraft,
    Invitation,
    Membership,
    ServiceClients,
    Session,
    User,
    check_client,
    check_draft,
    check_invitable_role,
    check_password,
    normalize_email,
    parse_id,
)
from .passwords import Passwords
from .repository import Repository


class CommitThenRefuse(Exception):
    """Refuses the call, yet the writes made so far must commit (revoking a family on refresh-token reuse).

    The edge's unit of work commits when it sees this and then raises `error` to the caller.
    """

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.reason)
        self.error = error


@dataclass(frozen=True, slots=True)
class Lifetimes:
    access_token: dt.timedelta
    refresh_token: dt.timedelta
    invitation: dt.timedelta
    service_token: dt.timedelta = dt.timedelta(minutes=15)


def _digest(token: str) -> bytes:
    # Refresh and invitation tokens carry 256 random bits, so a fast unsalted hash is enough: nothing to
    # brute-force, and a stolen table yields no usable token.
    return hashlib.sha256(token.encode()).digest()


def _invalid_credentials() -> Unauthenticated:
    return Unauthenticated("invalid_credentials", "the e-mail or password is wrong")


# Compared against when the client id is unknown, so that refusal costs what a wrong secret costs.
_NO_CLIENT = (hashlib.sha256(b"no such client").digest(),)


class AuthService:
    def __init__(
        self,
        clock: Clock,
        passwords: Passwords,
        keys: KeyRing,
        lifetimes: Lifetimes,
        admin_token: str = "",
        service_clients: ServiceClients | None = None,
    ) -> None:
        self._clock = clock
        self._passwords = passwords
        self._keys = keys
        self._lifetimes = lifetimes
        self._admin_token = admin_token
        self._service_clients = dict(service_clients or {})

    # -- accounts ------------------------------------------------------------------------------------
    async def sign_up(
        self, conn: Conn, email: str, password: str, draft: BusinessDraft | None
    ) -> tuple[User, Session]:
        """Creates the user and starts the signup saga (business-service creates the business)."""
        email = normalize_email(email)
        check_password(password)
        draft = check_draft(draft)
        password_hash = await self._passwords.hash(password)
        repo = Repository(conn)
        user = await self._create_user(repo, email, password_hash)
        if user is None:
            raise AlreadyExists("email_taken", "an account with this e-mail already exists", field="email")
        session = await self._start_session(repo, user.user_id)
        # Last, because the outbox holds a lock on the event's key until commit, and user.created events
        # all share one key (no business yet).
        await outbox.add(conn, events.user_created(user, draft), source=events.SOURCE)
        return user, session

    async def _create_user(self, repo: Repository, email: str, password_hash: str) -> User | None:
        user = User(new_id(), email, self._clock.now())
        return user if await repo.insert_user(user, password_hash) else None

    async def log_in(self, conn: Conn, email: str, password: str) -> tuple[User, Session]:
        repo = Repository(conn)
        try:
            email = normalize_email(email)
        except InvalidArgument:
            # A malformed address cannot belong to anyone; answer exactly as for an unknown one.
            email = ""
        found = await repo.credentials_by_email(email) if email else None
        # Verified even when no user was found, so both refusals take the same time.
        matched = await self._passwords.verify(found.password_hash if found else None, password)
        if found is None or not matched:
            raise _invalid_credentials()
        if self._passwords.needs_rehash(found.password_hash):
            # The hashing parameters were raised since this hash was made: upgrade it now that we know
            # the password.
            await repo.set_password_hash(found.user.user_id, await self._passwords.hash(password))
        return found.user, await self._start_session(repo, found.user.user_id)

    async def change_password(self, conn: Conn, caller: Caller, current: str, new: str) -> None:
        """Sets a new password and revokes every refresh-token family: all devices must log in again."""
        user_id = self._user_id(caller)
        check_password(new, field="new_password")
        repo = Repository(conn)
        found = await repo.credentials_by_id(user_id)
        if found is None or not await self._passwords.verify(found.password_hash, current):
            raise _invalid_credentials()
        await repo.set_password_hash(user_id, await self._passwords.hash(new))
        await repo.revoke_families_of_user(user_id, self._clock.now(), "password_changed")

    async def get_me(self, conn: Conn, caller: Caller) -> tuple[User, list[Membership]]:
        user_id = self._user_id(caller)
        repo = Repository(conn)
        found = await repo.credentials_by_id(user_id)
        if found is None:
            raise Unauthenticated("unknown_user", "the account no longer exists")
        return found.user, await repo.memberships_of_user(user_id)

    @staticmethod
    def _user_id(caller: Caller) -> uuid.UUID:
        raw = caller.require_user()
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise Unauthenticated("invalid_token", "the access token is not valid") from None

    # -- sessions ------------------------------------------------------------------------------------
    async def _start_session(self, repo: Repository, user_id: uuid.UUID) -> Session:
        family_id = new_id()
        await repo.insert_family(family_id, user_id, self._clock.now())
        return await self._issue(repo, user_id, family_id)

    async def _issue(self, repo: Repository, user_id: uuid.UUID, family_id: uuid.UUID) -> Session:
        """A new access token (listing the user's memberships as they are now) and refresh token."""
        now = self._clock.now()
        memberships = {str(m.business_id): m.role for m in await repo.memberships_of_user(user_id)}
        key = await self._keys.current(repo, now)
        access, access_expires = access_tokens.sign(
            key.private_key,
            key.kid,
            str(user_id),
            memberships,
            session_id=str(family_id),
            ttl=self._lifetimes.access_token,
            now=now,
        )
        refresh = secrets.token_urlsafe(32)
        refresh_expires = now + self._lifetimes.refresh_token
        await repo.insert_refresh_token(_digest(refresh), family_id, now, refresh_expires)
        return Session(access, access_expires, refresh, refresh_expires)

    async def refresh_session(self, conn: Conn, refresh_token: str) -> Session:
        """Spends `refresh_token` for a new pair in the same family.

        A spent token coming back means two parties hold the family (one of them stole it): the whole
        family is revoked, so the thief's and the victim's newest tokens both stop working.
        """
        repo = Repository(conn)
        token_hash = _digest(refresh_token)
        stored = await repo.refresh_token(token_hash, lock=True) if refresh_token else None
        now = self._clock.now()
        if stored is None:
            raise Unauthenticated("invalid_refresh_token", "the refresh token is not valid")
        if stored.spent_at is not None:
            await repo.revoke_family(stored.family_id, now, "refresh_token_reused")
            raise CommitThenRefuse(
                Unauthenticated("refresh_token_reused", "the refresh token was already used; log in again")
            )
        if stored.family_revoked_at is not None:
            raise Unauthenticated("refresh_token_revoked", "the session has ended; log in again")
        if stored.expires_at <= now:
            raise Unauthenticated("refresh_token_expired", "the session has expired; log in again")
        await repo.spend_refresh_token(token_hash, now)
        return await self._issue(repo, stored.user_id, stored.family_id)

    async def log_out(self, conn: Conn, refresh_token: str) -> None:
        """Revokes the family of `refresh_token`; unknown or already revoked tokens are fine (idempotent)."""
        if not refresh_token:
            return
        repo = Repository(conn)
        stored = await repo.refresh_token(_digest(refresh_token))
        if stored is not None:
            await repo.revoke_family(stored.family_id, self._clock.now(), "logged_out")

    # -- service tokens ------------------------------------------------------------------------------
    async def issue_service_token(
        self, conn: Conn, client_id: str, client_secret: str
    ) -> tuple[str, dt.datetime]:
        """A token for the service `client_id` acting on its own behalf (ADR 0013), if the secret is right.

        An unknown client and a wrong secret get the same answer after the same work: the presented
        secret's digest is compared, in constant time, with every digest listed for the client (or with a
        dummy one), so neither the answer nor its timing tells which services exist.
        """
        check_client(client_id, client_secret)
        presented = hashlib.sha256(client_secret.encode()).digest()
        known = client_id in self._service_clients
        matches = [
            hmac.compare_digest(presented, digest)
            for digest in self._service_clients.get(client_id, _NO_CLIENT)
        ]
        if not known or not any(matches):
            raise Unauthenticated("invalid_client", "the client id or secret is wrong")
        now = self._clock.now()
        key = await self._keys.current(Repository(conn), now)
        return access_tokens.sign_service(
            key.private_key, key.kid, client_id, ttl=self._lifetimes.service_token, now=now
        )

    # -- signing keys --------------------------------------------------------------------------------
    async def jwks(self, conn: Conn) -> str:
        return await self._keys.jwks(Repository(conn), self._clock.now())

    async def rotate_signing_key(self, conn: Conn, presented_admin_token: str) -> str:
        if not self._admin_token:
            raise PermissionDenied("admin_disabled", "no admin token is configured")
        # Constant-time comparison: response timing must not reveal how much of the token matched.
        if not hmac.compare_digest(presented_admin_token.encode(), self._admin_token.encode()):
            raise PermissionDenied("invalid_admin_token", "the admin token is missing or wrong")
        return await self._keys.rotate(Repository(conn), self._clock.now())

    # -- memberships ---------------------------------------------------------------------------------
    async def grant_owner(self, conn: Conn, business_id: str, owner_user_id: str) -> bool:
        """Saga step: `owner_user_id` owns the new business. True when newly granted (and announced)."""
        membership = Membership(
            parse_id(business_id, "business_id"), parse_id(owner_user_id, "owner_user_id"), OWNER
        )
        repo = Repository(conn)
        if not await repo.user_exists(membership.user_id):
            raise NotFound("user_not_found", f"no user {membership.user_id}")
        return await self._grant(conn, repo, membership)

    async def _grant(self, conn: Conn, repo: Repository, membership: Membership) -> bool:
        if not await repo.insert_membership(membership, self._clock.now()):
            return False
        await outbox.add(conn, events.membership_granted(membership), source=events.SOURCE)
        return True

    async def list_members(
        self, conn: Conn, caller: Caller, business_id: str, page_size: int, page_token: str
    ) -> tuple[list[Membership], str]:
        caller.require_role(business_id)
        business = parse_id(business_id, "business_id")
        size = pagination.page_size(page_size)
        # The scope names the business, so a token from one business's listing is refused by another's.
        scope = f"members:{business}"
        after = pagination.decode_page_token(scope, page_token)
        # One extra row tells whether another page follows without a count query.
        rows = await Repository(conn).members(business, after, size + 1)
        page = rows[:size]
        next_token = pagination.encode_page_token(scope, page[-1].user_id) if len(rows) > size else ""
        return page, next_token

    # -- invitations ---------------------------------------------------------------------------------
    async def invite_staff(
        self, conn: Conn, caller: Caller, business_id: str, email: str, role: str
    ) -> tuple[Invitation, str]:
        """A one-time invitation token for `email` to join as `role` (returned until e-mail delivers it)."""
        inviter_role = caller.require_manager(business_id)
        business = parse_id(business_id, "business_id")
        role = check_invitable_role(role)
        if role == ADMIN and inviter_role != OWNER:
            raise PermissionDenied("insufficient_role", "only an owner may invite an admin")
        email = normalize_email(email)
        repo = Repository(conn)
        if await repo.member_with_email(business, email):
            raise AlreadyExists("already_a_member", "this person is already a member", field="email")
        # The token names its business, so the lookup on acceptance is scoped by tenant like every other.
        token = f"{business}.{secrets.token_urlsafe(32)}"
        now = self._clock.now()
        invitation = Invitation(new_id(), business, email, role, now + self._lifetimes.invitation)
        await repo.insert_invitation(invitation, _digest(token), self._user_id(caller), now)
        return invitation, token

    async def accept_invitation(
        self, conn: Conn, caller: Caller, token: str, password: str
    ) -> tuple[Membership, Session | None]:
        """Joins the invitation's business: as the calling user, or as a new account made from the invitation.

        A caller whose access token was refused is refused, rather than treated as a newcomer.
        """
        if caller.anonymous and caller.auth_error:
            caller.require_user()
        business_text, _, _ = token.partition(".")
        try:
            business = uuid.UUID(business_text)
        except ValueError:
            raise NotFound("invitation_not_found", "no such invitation") from None
        repo = Repository(conn)
        invitation = await repo.invitation_by_token(business, _digest(token))
        now = self._clock.now()
        if invitation is None:
            raise NotFound("invitation_not_found", "no such invitation")
        if invitation.accepted_at is not None:
            raise FailedPrecondition("invitation_used", "this invitation was already accepted")
        if invitation.expires_at <= now:
            raise FailedPrecondition("invitation_expired", "this invitation has expired; ask for a new one")

        session: Session | None = None
        if not caller.anonymous:
            user_id = self._user_id(caller)
            found = await repo.credentials_by_id(user_id)
            if found is None:
                raise Unauthenticated("unknown_user", "the account no longer exists")
            if found.user.email != invitation.email:
                raise PermissionDenied(
                    "invitation_email_mismatch", "this invitation was sent to another e-mail address"
                )
        else:
            if not password:
                raise InvalidArgument(
                    "password_required", "log in, or choose a password for the new account", field="password"
                )
            check_password(password)
            user = await self._create_user(repo, invitation.email, await self._passwords.hash(password))
            if user is None:
                raise Unauthenticated("log_in_to_accept", "an account with this e-mail exists; log in first")
            await outbox.add(conn, events.user_created(user, None), source=events.SOURCE)
            user_id = user.user_id

        membership = Membership(invitation.business_id, user_id, invitation.role)
        if not await self._grant(conn, repo, membership):
            raise AlreadyExists("already_a_member", "you are already a member of this business")
        await repo.mark_invitation_accepted(invitation.business_id, invitation.invitation_id, user_id, now)
        if caller.anonymous:
            session = await self._start_session(repo, user_id)
        return membership, session
