"""Password hashing with argon2id (argon2-cffi's PasswordHasher and its RFC 9106 defaults).

Hashing takes about a tenth of a second of CPU by design, so it runs in a worker thread: the event loop keeps
serving other calls meanwhile.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# A hash of a password nobody has, made with the default parameters: verifying against it costs what
# verifying a real user's hash costs.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$wMx0v0cny0PmjGagGt7E+Q$W5uQVhRnzMOhLWma5qQAQYmzodJTvBY6cScl2d1vZUc"
)


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # With other parameters the stock dummy would verify faster or slower than a real hash: make a match.
        self._dummy = (
            _DUMMY_HASH
            if not self._hasher.check_needs_rehash(_DUMMY_HASH)
            else self._hasher.hash("not the password of anyone")
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`.

        `stored=None` (no such user) still runs a full verification against a dummy hash, so a log-in for
        an unknown e-mail takes as long as one for a known e-mail with a wrong password.
        """
        if stored is None:
            await asyncio.to_thread(self._verify, self._dummy, password)
            return False
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with weaker parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored)
