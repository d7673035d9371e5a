"""Wires the business-service process: its servicer, its migrations and its signup-saga consumer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import events, service
from .grpc import SERVICE, BusinessServiceServicer
from .seats import GrpcSeats, Seats, UncheckedSeats
from .settings import BusinessSettings


def own_settings(settings: ServiceSettings) -> BusinessSettings:
    """The runtime's settings when a harness built BusinessSettings itself, else the environment's."""
    return settings if isinstance(settings, BusinessSettings) else BusinessSettings()


def seats_for(own: BusinessSettings) -> Seats:
    if not own.billing_seat_check:
        return UncheckedSeats()
    # The channel lives as long as the process; grpc.aio binds it to the running loop on first use.
    return GrpcSeats(open_channel(own.billing_target), own.billing_timeout_s)


def signup_processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
    """Consumes auth.user.created.v1 and creates the signed-up owner's business (the signup saga)."""
    return events.signup_processor(pool, service.create_business_for_signup)


def build_spec(seats: Seats | None = None) -> platform_service.ServiceSpec:
    """The service; tests may pass their own seat check, otherwise the settings decide."""

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        used = seats or seats_for(own_settings(settings))
        return [(BusinessServiceServicer(pool, used), SERVICE)]

    return platform_service.ServiceSpec(
        name="business",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        processors=(signup_processor,),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
