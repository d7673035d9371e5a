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
# A service client's id is a service name ("booking"); its secret is random text of reasonable length.
_CLIENT_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_CLIENT_SECRET_LENGTH = 512

# client id -> the SHA-256 digests of its accepted secrets (two while a secret is being rotated).
ServiceClients = dict[str, tuple[bytes, ...]]


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


def check_client(client_id: str, client_secret: str) -> None:
    """The shape of IssueServiceToken's input; whether the client exists is not told here."""
    if not client_id:
        raise InvalidArgument("missing_client_id", "client_id is required", field="client_id")
    if not _CLIENT_ID.match(client_id):
        raise InvalidArgument("invalid_client_id", "client_id is a service name", field="client_id")
    if not client_secret:
        raise InvalidArgument("missing_client_secret", "client_secret is required", field="client_secret")
    if len(client_secret) > MAX_CLIENT_SECRET_LENGTH:
        raise InvalidArgument(
            "invalid_client_secret",
            f"client_secret may have at most {MAX_CLIENT_SECRET_LENGTH} characters",
            field="client_secret",
        )


def parse_service_clients(text: str) -> ServiceClients:
    """`booking:<sha256 hex>,notification:<hex>|<hex>` as {client id: digests}; ValueError when malformed.

    Several digests for one client (separated by '|') accept either secret: how a secret is rotated.
    """
    clients: ServiceClients = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        client_id, sep, hashes = entry.partition(":")
        client_id = client_id.strip()
        if not sep or not _CLIENT_ID.match(client_id):
            raise ValueError(f"service client {entry!r} is not <name>:<sha256 hex>[|<sha256 hex>...]")
        if client_id in clients:
            raise ValueError(f"service client {client_id!r} is listed twice; separate its hashes with '|'")
        digests = [h.strip().lower() for h in hashes.split("|")]
        if not digests or not all(_SHA256_HEX.match(h) for h in digests):
            raise ValueError(
                f"service client {client_id!r}: each secret hash must be 64 hex digits (SHA-256)"
            )
        clients[client_id] = tuple(bytes.fromhex(h) for h in digests)
    return clients
