"""Wires the notification-service process: its servicer, its migrations and its one consumer (billing's
entitlements, the read model that decides whether a business may write templates).

The pipeline's consumers (due reminders, confirmations, status counters) run in the Faust worker of
streams/ (apptremind-streams), which builds them from consumers.py; this process serves the RPCs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import entitlements
from .booking_client import Booking, GrpcBooking
from .grpc import SERVICE, NotificationServiceServicer
from .settings import NotificationSettings

SQL_DIR = Path(__file__).parent / "sql"


def build_spec(
    clock: Clock | None = None,
    booking: Booking | None = None,
    settings: NotificationSettings | None = None,
) -> platform_service.ServiceSpec:
    """The service; tests pass a settable clock, their own booking and settings."""
    used_clock = clock or SystemClock()

    def servicers(pool: AsyncConnectionPool, _: ServiceSettings) -> Sequence[tuple[object, str]]:
        own = settings or NotificationSettings()
        # The channel lives as long as the process; grpc.aio binds it to the running loop on first use.
        used_booking = booking or GrpcBooking(
            open_channel(own.booking_target), own.booking_timeout_s, own.booking_max_inflight
        )
        servicer = NotificationServiceServicer(
            pool, used_booking, used_clock, own.sms_auth_tokens, dt.timedelta(days=own.reply_window_days)
        )
        return [(servicer, SERVICE)]

    def entitlements_consumer(pool: AsyncConnectionPool, _: ServiceSettings) -> MessageProcessor:
        return entitlements.processor(pool)

    return platform_service.ServiceSpec(
        name="notification", servicers=servicers, sql_dir=SQL_DIR, processors=(entitlements_consumer,)
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
