"""Wires the billing-service process: its servicer, its migrations and its housekeeping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.background import BackgroundTask, periodic
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.db import unit_of_work
from apptremind_platform.settings import ServiceSettings

from . import usage, webhooks
from .grpc import SERVICE, BillingServiceServicer
from .settings import BillingSettings
from .stripe_gateway import StripeGateway


def build_spec(
    clock: Clock | None = None, billing: BillingSettings | None = None
) -> platform_service.ServiceSpec:
    """The service; tests pass a settable clock and their own billing settings (stripe-mock, secrets)."""
    used_clock = clock or SystemClock()

    def own_settings() -> BillingSettings:
        return billing or BillingSettings()

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        own = own_settings()
        gateway = StripeGateway(own.stripe_api_key, own.stripe_api_base)
        return [(BillingServiceServicer(pool, used_clock, own, gateway), SERVICE)]

    def housekeeping(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        async def run() -> tuple[int, int]:
            now = used_clock.now()
            async with unit_of_work(pool) as conn:
                expired = await usage.expire_stale(conn, now)
            async with unit_of_work(pool) as conn:
                downgraded = await webhooks.downgrade_after_grace(conn, now)
            return expired, downgraded

        return periodic("billing_housekeeping", own_settings().billing_housekeeping_interval_s, run)

    return platform_service.ServiceSpec(
        name="billing",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        background=(housekeeping,),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
