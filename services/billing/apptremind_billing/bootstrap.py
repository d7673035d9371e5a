"""Wires the billing-service process: its servicer, its migrations, its consumer (booking's deposit
settlement requests), the deposit settler and its housekeeping."""

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

from . import deposits, usage, webhooks
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

    def gateway() -> StripeGateway:
        own = own_settings()
        return StripeGateway(own.stripe_api_key, own.stripe_api_base)

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        return [(BillingServiceServicer(pool, used_clock, own_settings(), gateway()), SERVICE)]

    def settlements(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
        return deposits.settlement_processor(pool, used_clock)

    def settler(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        stripe = gateway()

        async def run() -> int:
            return await deposits.settle_pending(pool, stripe, used_clock.now())

        return periodic("deposit_settler", own_settings().billing_settle_interval_s, run)

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
        processors=(settlements,),
        background=(housekeeping, settler),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
