"""Wires the booking-service process: its servicer, its migrations, its consumer (the business read model and
billing's deposit verdicts) and its background tasks (idempotency-key pruning, lapsed holds)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.background import BackgroundTask, periodic
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.service_credentials import service_tokens_for
from apptremind_platform.settings import ServiceSettings

from . import events, repository, service
from .availability_cache import AvailabilityCache
from .deposits import Deposits, GrpcDeposits, HoldOutcomes, outcome_handlers
from .grpc import SERVICE, BookingServiceServicer
from .repository import AppointmentRow
from .settings import BookingSettings

# Expired keys are already ignored by lookups; pruning only keeps the table small.
PRUNE_INTERVAL_S = 3600.0


def own_settings(settings: ServiceSettings) -> BookingSettings:
    """The runtime's settings when a harness built BookingSettings itself, else the environment's."""
    return settings if isinstance(settings, BookingSettings) else BookingSettings()


def deposits_for(settings: ServiceSettings, own: BookingSettings) -> Deposits | None:
    """billing's AuthorizeDeposit with this service's credentials; None (no deposits) without them."""
    tokens = service_tokens_for(settings)
    if tokens is None:
        return None
    return GrpcDeposits(open_channel(own.booking_billing_target), tokens, own.booking_billing_timeout_s)


def build_spec(
    clock: Clock | None = None,
    token_secret: str | None = None,
    availability_cache_slots: int | None = None,
    deposits: Deposits | None = None,
) -> platform_service.ServiceSpec:
    """The service; tests pass a settable clock, their own token secret, cache size and deposit client."""
    used_clock = clock or SystemClock()

    def secret_of(settings: ServiceSettings) -> str:
        return token_secret or own_settings(settings).booking_token_secret

    def outcomes(settings: ServiceSettings) -> HoldOutcomes:
        secret = secret_of(settings)

        async def announce(conn: Conn, a: AppointmentRow, now: dt.datetime) -> None:
            await service.announce_booking(conn, a, now, secret)

        return HoldOutcomes(used_clock, announce)

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        own = own_settings(settings)
        slots = (
            own.booking_availability_cache_slots
            if availability_cache_slots is None
            else availability_cache_slots
        )
        cache = AvailabilityCache(slots) if slots > 0 else None
        servicer = BookingServiceServicer(
            pool,
            used_clock,
            secret_of(settings),
            cache,
            deposits=deposits or deposits_for(settings, own),
            hold_ttl=dt.timedelta(seconds=own.booking_hold_ttl_s),
        )
        return [(servicer, SERVICE)]

    def consumer(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
        """The business events that feed availability, and billing's verdicts on deposits."""
        return events.read_model_processor(pool, outcome_handlers(outcomes(settings)))

    def prune_idempotency_keys(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        async def prune() -> int:
            async with unit_of_work(pool) as conn:
                return await repository.prune_idempotency_keys(conn, used_clock.now())

        return periodic("prune_idempotency_keys", PRUNE_INTERVAL_S, prune)

    def release_lapsed_holds(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        sweeper = outcomes(settings)

        async def sweep() -> int:
            return await sweeper.sweep(pool)

        return periodic("release_lapsed_holds", own_settings(settings).booking_hold_sweep_interval_s, sweep)

    return platform_service.ServiceSpec(
        name="booking",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        processors=(consumer,),
        background=(prune_idempotency_keys, release_lapsed_holds),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
