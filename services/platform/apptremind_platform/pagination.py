"""Cursor pagination shared by every list RPC: page sizes and opaque page tokens.

A token names the list it belongs to (its scope: the kind of list and, for tenant lists, the business)
and the last id served, so a token from one list, or one tenant's list, is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import uuid

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_size(value: int) -> int:
    """0 means the default; sizes above the maximum are clamped, as list APIs commonly do."""
    if value < 0:
        raise InvalidArgument("invalid_page_size", "page_size must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(scope: str, last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{scope}|{last_id}".encode()).decode().rstrip("=")


def decode_page_token(scope: str, token: str) -> uuid.UUID | None:
    """The id to continue after, or None for the first page."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, last = text.rpartition("|")
        if prefix == scope:
            return uuid.UUID(last)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidArgument("invalid_page_token", "page_token does not come from this list")
