"""Who is calling: the identity proven by the access token the call carries, and the checks on it.

The edge forwards the end user's access token (`authorization: Bearer <jwt>`); every service verifies it
itself (access_tokens.TokenVerifier) and authorises each call against the memberships it lists. A service
calling on its own behalf presents a service token instead (ADR 0013): that caller names a service, never
a user, so user checks refuse it and `require_service` admits it. Nothing else in the metadata is trusted:
a caller that forges identity headers, or a token, is anonymous.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import PermissionDenied, Unauthenticated

AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"

OWNER, ADMIN, STAFF = "owner", "admin", "staff"
ROLES = (OWNER, ADMIN, STAFF)
MANAGERS = (OWNER, ADMIN)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str = ""
    # business_id -> role, as the access token lists them.
    memberships: Mapping[str, str] = field(default_factory=dict)
    token: str = ""
    # Why a presented token was refused (expired, bad signature, ...); empty when none was presented.
    auth_error: str = ""
    # The service calling on its own behalf (a service token); such a caller has no user and no memberships.
    service: str = ""

    @property
    def anonymous(self) -> bool:
        """No user: a service caller is anonymous for every user-facing purpose."""
        return not self.user_id

    def require_user(self) -> str:
        if self.service:
            raise Unauthenticated("user_token_required", "this call needs a user's access token")
        if self.anonymous:
            raise Unauthenticated(self.auth_error or "unauthenticated", "a valid access token is required")
        return self.user_id

    def require_service(self, *names: str) -> str:
        """The calling service's name, if it is one of `names`; refuses users and other services alike."""
        if not names:
            raise ValueError("require_service needs the names of the services allowed")
        if not self.service and self.anonymous:
            raise Unauthenticated(self.auth_error or "unauthenticated", "a valid service token is required")
        if not self.service or self.service not in names:
            raise PermissionDenied("service_not_allowed", "this call is reserved for other services")
        return self.service

    def role_in(self, business_id: str) -> str | None:
        return self.memberships.get(business_id)

    def require_role(self, business_id: str, roles: Iterable[str] = ROLES) -> str:
        """The caller's role in business_id, if it is one of `roles`; refuses otherwise.

        Unknown and foreign business ids get the same answer, so a caller learns nothing about businesses
        it does not belong to.
        """
        self.require_user()
        role = self.memberships.get(business_id)
        if role is None:
            raise PermissionDenied("not_a_member", "the caller is not a member of this business")
        if role not in tuple(roles):
            raise PermissionDenied("insufficient_role", f"the {role} role may not do this")
        return role

    def require_manager(self, business_id: str) -> str:
        return self.require_role(business_id, MANAGERS)

    def to_metadata(self) -> list[tuple[str, str]]:
        """Metadata that carries this identity on to another service (which verifies it again)."""
        return [(AUTHORIZATION, f"Bearer {self.token}")] if self.token else []


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | Mapping[str, str] | None) -> str:
    if metadata is None:
        return ""
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    for key, value in items:
        if key == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


ANONYMOUS = Caller()
current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("current_caller", default=ANONYMOUS)
