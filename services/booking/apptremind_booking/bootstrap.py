"""Wires the booking-service process: its servicer, its migrations and its read-model consumer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import events
from .grpc import SERVICE, BookingServiceServicer
from .settings import BookingSettings


def read_model_processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
    """Consumes the business events that feed availability (staff, hours, overrides, services, policy)."""
    return events.read_model_processor(pool)


def build_spec(clock: Clock | None = None, token_secret: str | None = None) -> platform_service.ServiceSpec:
    """The service; tests pass a settable clock and their own token secret."""
    used_clock = clock or SystemClock()

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        secret = token_secret or BookingSettings().booking_token_secret
        return [(BookingServiceServicer(pool, used_clock, secret), SERVICE)]

    return platform_service.ServiceSpec(
        name="booking",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        processors=(read_model_processor,),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
