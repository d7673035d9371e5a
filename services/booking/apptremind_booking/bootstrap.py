"""Wires the booking-service process: its servicer, its migrations and its read-model consumer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.background import BackgroundTask, periodic
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.db import unit_of_work
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import events, repository
from .availability_cache import AvailabilityCache
from .grpc import SERVICE, BookingServiceServicer
from .settings import BookingSettings

# Expired keys are already ignored by lookups; pruning only keeps the table small.
PRUNE_INTERVAL_S = 3600.0


def read_model_processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
    """Consumes the business events that feed availability (staff, hours, overrides, services, policy)."""
    return events.read_model_processor(pool)


def build_spec(
    clock: Clock | None = None, token_secret: str | None = None, availability_cache_slots: int | None = None
) -> platform_service.ServiceSpec:
    """The service; tests pass a settable clock, their own token secret and cache size."""
    used_clock = clock or SystemClock()

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        own = BookingSettings()
        secret = token_secret or own.booking_token_secret
        slots = (
            own.booking_availability_cache_slots
            if availability_cache_slots is None
            else availability_cache_slots
        )
        cache = AvailabilityCache(slots) if slots > 0 else None
        return [(BookingServiceServicer(pool, used_clock, secret, cache), SERVICE)]

    def prune_idempotency_keys(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        async def prune() -> int:
            async with unit_of_work(pool) as conn:
                return await repository.prune_idempotency_keys(conn, used_clock.now())

        return periodic("prune_idempotency_keys", PRUNE_INTERVAL_S, prune)

    return platform_service.ServiceSpec(
        name="booking",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        processors=(read_model_processor,),
        background=(prune_idempotency_keys,),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
