"""Self-service tokens: the signed, expiring link a customer uses to cancel or reschedule one appointment.

Format: urlsafe-base64(``business_id|appointment_id|expires_unix``) ``.`` urlsafe-base64(HMAC-SHA256 of the
first part). The token binds the business and the appointment, so it is useless for any other appointment.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import uuid

from apptremind_platform.errors import PermissionDenied

# Covers the booking window (60 days) with room for a reschedule; the token is reissued on every booking.
TOKEN_TTL = dt.timedelta(days=90)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, business_id: uuid.UUID, appointment_id: uuid.UUID, expires: dt.datetime) -> str:
    body = f"{business_id}|{appointment_id}|{int(expires.timestamp())}".encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify(secret: str, token: str, now: dt.datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """The (business id, appointment id) a genuine, unexpired token names; PERMISSION_DENIED otherwise.

    The token carries its ids (signed, not secret), so a customer's link needs nothing else.
    """
    invalid = PermissionDenied("invalid_self_service_token", "the self-service token is not valid here")
    body_text, _, mac_text = token.partition(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise invalid from None
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise invalid
    parts = body.decode(errors="replace").split("|")
    try:
        business_id, appointment_id, expires = uuid.UUID(parts[0]), uuid.UUID(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise invalid from None
    if len(parts) != 3:
        raise invalid
    if expires <= now.timestamp():
        raise PermissionDenied("self_service_token_expired", "the self-service token has expired")
    return business_id, appointment_id
