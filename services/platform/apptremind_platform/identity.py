"""Who is calling: the caller's identity and tenant as carried in gRPC metadata.

The edge verifies the end user's JWT and forwards the identity in these keys; each service decides what
the caller may do. How services authenticate the forwarded identity itself is the auth issue's concern.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

USER_ID = "x-apptremind-user-id"
BUSINESS_ID = "x-apptremind-business-id"
ROLE = "x-apptremind-role"
REQUEST_ID = "x-request-id"


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str = ""
    business_id: str = ""
    role: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.user_id

    def to_metadata(self) -> list[tuple[str, str]]:
        pairs = [(USER_ID, self.user_id), (BUSINESS_ID, self.business_id), (ROLE, self.role)]
        return [(k, v) for k, v in pairs if v]

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | Mapping[str, str] | None) -> Caller:
        if metadata is None:
            return cls()
        items = metadata.items() if isinstance(metadata, Mapping) else metadata
        found: dict[str, str] = {}
        for key, value in items:
            if key in (USER_ID, BUSINESS_ID, ROLE):
                found[key] = value.decode() if isinstance(value, bytes) else value
        return cls(found.get(USER_ID, ""), found.get(BUSINESS_ID, ""), found.get(ROLE, ""))


ANONYMOUS = Caller()
# Caller is frozen, so sharing one default instance is safe.
current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("current_caller", default=ANONYMOUS)
