"""The booking-service's settings: the platform's plus the self-service token secret."""

from __future__ import annotations

from pydantic import Field

from apptremind_platform.settings import ServiceSettings

from .availability_cache import DEFAULT_MAX_SLOTS

# Only for local development and tests; documented in the README. Production sets
# APPTREMIND_BOOKING_TOKEN_SECRET (a per-process random default would break every customer link on restart
# and differ between replicas, so there is none).
DEV_TOKEN_SECRET = "apptremind-dev-only-booking-token-secret"


class BookingSettings(ServiceSettings):
    service_name: str = "booking"
    # HMAC-SHA256 key of the customers' self-service tokens (APPTREMIND_BOOKING_TOKEN_SECRET).
    booking_token_secret: str = DEV_TOKEN_SECRET
    # Upper bound on the slots the in-process availability cache holds (about 250 bytes each);
    # 0 turns the cache off (APPTREMIND_BOOKING_AVAILABILITY_CACHE_SLOTS).
    booking_availability_cache_slots: int = Field(default=DEFAULT_MAX_SLOTS, ge=0)
    # The paid booking saga: billing-service authorises deposits. Services with a deposit can be booked only
    # when this service has its client credentials (APPTREMIND_SERVICE_CLIENT_SECRET).
    booking_billing_target: str = "127.0.0.1:50054"
    booking_billing_timeout_s: float = Field(default=10.0, gt=0)
    # How long a slot is held while the customer pays the deposit, and how often lapsed holds are released.
    booking_hold_ttl_s: float = Field(default=900.0, gt=0)
    booking_hold_sweep_interval_s: float = Field(default=10.0, gt=0)
