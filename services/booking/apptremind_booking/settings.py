"""The booking-service's settings: the platform's plus the self-service token secret."""

from __future__ import annotations

from apptremind_platform.settings import ServiceSettings

# Only for local development and tests; documented in the README. Production sets
# APPTREMIND_BOOKING_TOKEN_SECRET (a per-process random default would break every customer link on restart
# and differ between replicas, so there is none).
DEV_TOKEN_SECRET = "apptremind-dev-only-booking-token-secret"


class BookingSettings(ServiceSettings):
    service_name: str = "booking"
    # HMAC-SHA256 key of the customers' self-service tokens (APPTREMIND_BOOKING_TOKEN_SECRET).
    booking_token_secret: str = DEV_TOKEN_SECRET
