"""All of the auth-service's SQL: one Repository per unit of work, every query parameterised.

Tenant tables (memberships, invitations) are always queried with their business_id, except a user's own
memberships, which are read by user_id for the access token. Times come from the service's clock.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, LiteralString

from apptremind_platform.db import Conn

from .model import Credentials, Invitation, Membership, RefreshToken, User

# Held for the rest of the transaction while signing keys are created or rotated, so two replicas doing it
# at once cannot both make a key current.
_KEYS_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('apptremind_auth.signing_keys', 0))"


class Repository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def _one(self, query: LiteralString, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        cur = await self._conn.execute(query, params)
        return await cur.fetchone()

    async def _all(self, query: LiteralString, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cur = await self._conn.execute(query, params)
        return await cur.fetchall()

    async def _count(self, query: LiteralString, params: tuple[Any, ...]) -> int:
        cur = await self._conn.execute(query, params)
        return cur.rowcount

    # -- users ---------------------------------------------------------------------------------------
    async def insert_user(self, user: User, password_hash: str) -> bool:
        """False when the e-mail is taken (the unique index decides, so two sign-ups cannot both win)."""
        return (
            await self._one(
                "INSERT INTO users (user_id, email, password_hash, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (email) DO NOTHING RETURNING user_id",
                (user.user_id, user.email, password_hash, user.created_at),
            )
            is not None
        )

    async def credentials_by_email(self, email: str) -> Credentials | None:
        row = await self._one(
            "SELECT user_id, email, created_at, password_hash FROM users WHERE email = %s", (email,)
        )
        return Credentials(User(row[0], row[1], row[2]), row[3]) if row else None

    async def credentials_by_id(self, user_id: uuid.UUID) -> Credentials | None:
        row = await self._one(
            "SELECT user_id, email, created_at, password_hash FROM users WHERE user_id = %s", (user_id,)
        )
        return Credentials(User(row[0], row[1], row[2]), row[3]) if row else None

    async def user_exists(self, user_id: uuid.UUID) -> bool:
        return await self._one("SELECT 1 FROM users WHERE user_id = %s", (user_id,)) is not None

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self._conn.execute(
            "UPDATE users SET password_hash = %s WHERE user_id = %s", (password_hash, user_id)
        )

    # -- refresh tokens ------------------------------------------------------------------------------
    async def insert_family(self, family_id: uuid.UUID, user_id: uuid.UUID, now: dt.datetime) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_families (family_id, user_id, created_at) VALUES (%s, %s, %s)",
            (family_id, user_id, now),
        )

    async def insert_refresh_token(
        self, token_hash: bytes, family_id: uuid.UUID, issued_at: dt.datetime, expires_at: dt.datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES (%s, %s, %s, %s)",
            (token_hash, family_id, issued_at, expires_at),
        )

    async def refresh_token(self, token_hash: bytes, *, lock: bool = False) -> RefreshToken | None:
        """The token and its family; `lock` holds the token row so two exchanges of it run one at a time."""
        row = await self._one(
            "SELECT t.family_id, f.user_id, t.expires_at, t.spent_at, f.revoked_at "
            "FROM refresh_tokens t JOIN refresh_families f USING (family_id) WHERE t.token_hash = %s"
            + (" FOR UPDATE OF t" if lock else ""),
            (token_hash,),
        )
        return RefreshToken(*row) if row else None

    async def spend_refresh_token(self, token_hash: bytes, now: dt.datetime) -> None:
        await self._conn.execute(
            "UPDATE refresh_tokens SET spent_at = %s WHERE token_hash = %s", (now, token_hash)
        )

    async def revoke_family(self, family_id: uuid.UUID, now: dt.datetime, reason: str) -> None:
        await self._conn.execute(
            "UPDATE refresh_families SET revoked_at = %s, revoked_reason = %s "
            "WHERE family_id = %s AND revoked_at IS NULL",
            (now, reason, family_id),
        )

    async def revoke_families_of_user(self, user_id: uuid.UUID, now: dt.datetime, reason: str) -> int:
        return await self._count(
            "UPDATE refresh_families SET revoked_at = %s, revoked_reason = %s "
            "WHERE user_id = %s AND revoked_at IS NULL",
            (now, reason, user_id),
        )

    # -- signing keys --------------------------------------------------------------------------------
    async def lock_signing_keys(self) -> None:
        await self._conn.execute(_KEYS_LOCK)

    async def current_signing_key(self) -> tuple[str, bytes] | None:
        row = await self._one(
            "SELECT kid, private_key FROM signing_keys WHERE activated_at IS NOT NULL AND retired_at IS NULL",
            (),
        )
        return (row[0], bytes(row[1])) if row else None

    async def insert_signing_key(
        self, kid: str, private_key: bytes, now: dt.datetime, *, current: bool
    ) -> None:
        await self._conn.execute(
            "INSERT INTO signing_keys (kid, private_key, created_at, activated_at) VALUES (%s, %s, %s, %s)",
            (kid, private_key, now, now if current else None),
        )

    async def promote_next_signing_key(self, now: dt.datetime) -> str | None:
        """Retires the current key and makes the next one current; returns the new current kid."""
        await self._conn.execute(
            "UPDATE signing_keys SET retired_at = %s WHERE activated_at IS NOT NULL AND retired_at IS NULL",
            (now,),
        )
        row = await self._one(
            "UPDATE signing_keys SET activated_at = %s WHERE activated_at IS NULL RETURNING kid", (now,)
        )
        return str(row[0]) if row else None

    async def delete_signing_keys_retired_before(self, cutoff: dt.datetime) -> int:
        return await self._count("DELETE FROM signing_keys WHERE retired_at < %s", (cutoff,))

    async def published_signing_keys(self, retired_after: dt.datetime) -> list[tuple[str, bytes]]:
        rows = await self._all(
            "SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL OR retired_at > %s "
            "ORDER BY created_at, kid",
            (retired_after,),
        )
        return [(str(kid), bytes(key)) for kid, key in rows]

    # -- memberships ---------------------------------------------------------------------------------
    async def memberships_of_user(self, user_id: uuid.UUID) -> list[Membership]:
        rows = await self._all(
            "SELECT business_id, user_id, role FROM memberships WHERE user_id = %s ORDER BY business_id",
            (user_id,),
        )
        return [Membership(*row) for row in rows]

    async def insert_membership(self, membership: Membership, now: dt.datetime) -> bool:
        """False when the user already belongs to the business (replays and duplicates change nothing)."""
        return (
            await self._one(
                "INSERT INTO memberships (business_id, user_id, role, granted_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (business_id, user_id) DO NOTHING RETURNING user_id",
                (membership.business_id, membership.user_id, membership.role, now),
            )
            is not None
        )

    async def member_with_email(self, business_id: uuid.UUID, email: str) -> bool:
        return (
            await self._one(
                "SELECT 1 FROM memberships m JOIN users u USING (user_id) "
                "WHERE m.business_id = %s AND u.email = %s",
                (business_id, email),
            )
            is not None
        )

    async def members(
        self, business_id: uuid.UUID, after_user_id: uuid.UUID | None, limit: int
    ) -> list[Membership]:
        if after_user_id is None:
            rows = await self._all(
                "SELECT business_id, user_id, role FROM memberships WHERE business_id = %s "
                "ORDER BY user_id LIMIT %s",
                (business_id, limit),
            )
        else:
            rows = await self._all(
                "SELECT business_id, user_id, role FROM memberships WHERE business_id = %s AND user_id > %s "
                "ORDER BY user_id LIMIT %s",
                (business_id, after_user_id, limit),
            )
        return [Membership(*row) for row in rows]

    # -- invitations ---------------------------------------------------------------------------------
    async def insert_invitation(
        self, invitation: Invitation, token_hash: bytes, invited_by: uuid.UUID, now: dt.datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO invitations (business_id, invitation_id, email, role, token_hash, invited_by, "
            "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                invitation.business_id,
                invitation.invitation_id,
                invitation.email,
                invitation.role,
                token_hash,
                invited_by,
                now,
                invitation.expires_at,
            ),
        )

    async def invitation_by_token(self, business_id: uuid.UUID, token_hash: bytes) -> Invitation | None:
        """The invitation, locked for the rest of the transaction: two acceptances run one at a time."""
        row = await self._one(
            "SELECT invitation_id, business_id, email, role, expires_at, accepted_at FROM invitations "
            "WHERE business_id = %s AND token_hash = %s FOR UPDATE",
            (business_id, token_hash),
        )
        return Invitation(*row) if row else None

    async def mark_invitation_accepted(
        self, business_id: uuid.UUID, invitation_id: uuid.UUID, user_id: uuid.UUID, now: dt.datetime
    ) -> None:
        await self._conn.execute(
            "UPDATE invitations SET accepted_at = %s, accepted_by = %s "
            "WHERE business_id = %s AND invitation_id = %s",
            (now, user_id, business_id, invitation_id),
        )
