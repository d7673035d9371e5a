"""The auth-service's domain values and the input rules they must satisfy (no I/O here).

Each rule raises InvalidArgument with a machine-readable reason and the offending field, so bad input is
refused before anything is read or written.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from apptremind_platform import validation
from apptremind_platform.errors import InvalidArgument
from apptremind_platform.identity import ADMIN, STAFF

MIN_PASSWORD_LENGTH = 10
# Hashing cost is per call, not per character, but an unbounded input is still a cheap way to burn CPU.
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 254
MAX_BUSINESS_NAME_LENGTH = 200
INVITABLE_ROLES = (ADMIN, STAFF)

# Deliberately loose (one @, a dot in the domain, no spaces): the invitation or log-in proves the address;
# a stricter pattern mostly refuses real addresses.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@dataclass(frozen=True, slots=True)
class User:
    user_id: uuid.UUID
    email: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class Membership:
    business_id: uuid.UUID
    user_id: uuid.UUID
    role: str


@dataclass(frozen=True, slots=True)
class Session:
    access_token: str
    access_token_expires_at: dt.datetime
    refresh_token: str
    refresh_token_expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class BusinessDraft:
    name: str
    slug: str
    time_zone: str
    locale: str
    currency: str


@dataclass(frozen=True, slots=True)
class Invitation:
    invitation_id: uuid.UUID
    business_id: uuid.UUID
    email: str
    role: str
    expires_at: dt.datetime
    accepted_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A stored refresh token with what deciding on it needs."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: dt.datetime
    spent_at: dt.datetime | None
    family_revoked_at: dt.datetime | None


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidArgument("invalid_email", "enter a valid e-mail address", field="email")
    return email


def check_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(
            "weak_password", f"the password needs at least {MIN_PASSWORD_LENGTH} characters", field=field
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            "password_too_long",
            f"the password may have at most {MAX_PASSWORD_LENGTH} characters",
            field=field,
        )
    return password


def check_draft(draft: BusinessDraft | None) -> BusinessDraft:
    """The business a signing-up owner asks for, normalised by the same rules the business-service applies
    when the saga creates it, so an accepted sign-up never fails there."""
    if draft is None:
        raise InvalidArgument("missing_business", "sign-up needs the business to create", field="business")
    return BusinessDraft(
        validation.name(draft.name, "invalid_business_name", "the business name"),
        validation.slug(draft.slug),
        validation.time_zone(draft.time_zone),
        validation.locale(draft.locale),
        validation.currency(draft.currency),
    )


def check_invitable_role(role: str) -> str:
    if role not in INVITABLE_ROLES:
        raise InvalidArgument("invalid_role", "invite as admin or staff", field="role")
    return role


def parse_id(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(f"invalid_{field}", f"{field} must be a UUID", field=field) from None
