"""Ed25519 signing keys for access tokens: created at first use, rotated on request, published as a JWKS.

A key lives three stages (see sql/0001_auth.sql): next -> current -> retired. The JWKS lists the next key
before it signs anything, so verifiers that cached the JWKS already hold it when a rotation makes it
current; a retired key stays listed until every token it signed has expired, then it is deleted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from apptremind_platform.access_tokens import LEEWAY_S, public_jwk

from .repository import Repository


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint: a kid derived from the key itself, so it never names two keys."""
    x = base64.urlsafe_b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).rstrip(b"=")
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x.decode()}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _generate() -> tuple[str, bytes]:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return thumbprint(key.public_key()), raw


class KeyRing:
    """The signing keys in the service database. `retention`: how long a retired key stays published."""

    def __init__(self, access_token_ttl: dt.timedelta) -> None:
        # A token signed just before retirement is valid for its TTL plus the verifiers' leeway.
        self.retention = access_token_ttl + dt.timedelta(seconds=LEEWAY_S)

    async def current(self, repo: Repository, now: dt.datetime) -> SigningKey:
        found = await repo.current_signing_key() or await self._first_keys(repo, now)
        kid, raw = found
        return SigningKey(kid, Ed25519PrivateKey.from_private_bytes(raw))

    async def _first_keys(self, repo: Repository, now: dt.datetime) -> tuple[str, bytes]:
        await repo.lock_signing_keys()
        # Another replica may have created them while this one waited for the lock.
        found = await repo.current_signing_key()
        if found is not None:
            return found
        current = _generate()
        await repo.insert_signing_key(*current, now, current=True)
        await repo.insert_signing_key(*_generate(), now, current=False)
        return current

    async def rotate(self, repo: Repository, now: dt.datetime) -> str:
        """Makes the published next key current and publishes a new next key; returns the current kid."""
        await self.current(repo, now)
        await repo.lock_signing_keys()
        kid = await repo.promote_next_signing_key(now)
        if kid is None:
            # Only a database edited by hand lacks a next key; recover by making a fresh key current.
            kid, raw = _generate()
            await repo.insert_signing_key(kid, raw, now, current=True)
        await repo.insert_signing_key(*_generate(), now, current=False)
        # Private keys nobody can need any more do not linger in the database.
        await repo.delete_signing_keys_retired_before(now - self.retention)
        return kid

    async def jwks(self, repo: Repository, now: dt.datetime) -> str:
        """The JWKS document: next, current and recently retired public keys."""
        await self.current(repo, now)
        keys = [
            public_jwk(kid, Ed25519PrivateKey.from_private_bytes(raw).public_key())
            for kid, raw in await repo.published_signing_keys(now - self.retention)
        ]
        return json.dumps({"keys": keys})
