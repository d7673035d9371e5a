"""What the agents share, built once per worker inside its event loop: the notification database pool,
one group commit for the agents' transactions (a batch of status events commits on its own), the providers,
the booking client and the three MessageProcessors."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from apptremind_notification import consumers
from apptremind_notification.booking_client import GrpcBooking
from apptremind_notification.channels.base import Provider
from apptremind_notification.channels.settings import ChannelSettings, build_providers
from apptremind_notification.dispatch import Dispatcher
from apptremind_notification.group_commit import GroupCommit
from apptremind_notification.sms_credits import GrpcSmsCredits, SmsCredits, Unmetered
from apptremind_platform.clock import SystemClock
from apptremind_platform.db import open_pool
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.service_credentials import service_tokens_for

from .settings import StreamsSettings


@dataclass
class Pipeline:
    pool: AsyncConnectionPool
    providers: dict[str, Provider]
    dispatch: MessageProcessor
    confirmations: MessageProcessor
    status: MessageProcessor

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.pool.close()


def sms_credits_for(settings: StreamsSettings) -> SmsCredits:
    """billing's SMS meter with this worker's service credentials, or no metering when switched off."""
    if not settings.sms_metering:
        return Unmetered()
    tokens = service_tokens_for(settings)
    if tokens is None:
        raise RuntimeError(
            "SMS metering needs the service's client credentials (APPTREMIND_SERVICE_CLIENT_SECRET); "
            "set APPTREMIND_SMS_METERING=false to send without billing"
        )
    return GrpcSmsCredits(
        open_channel(settings.billing_target),
        tokens,
        settings.billing_timeout_s,
        settings.billing_max_inflight,
    )


async def build(settings: StreamsSettings) -> Pipeline:
    pool = await open_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max, name="streams")
    providers = build_providers(ChannelSettings())
    booking = GrpcBooking(
        open_channel(settings.booking_target), settings.booking_timeout_s, settings.booking_max_inflight
    )
    # The messages in flight (a batch of due reminders; status events retried one at a time) share commits.
    group = GroupCommit(pool, max_inflight=settings.streams_commit_groups)
    dispatcher = Dispatcher(
        pool,
        providers,
        booking,
        SystemClock(),
        late_after=dt.timedelta(seconds=settings.late_after_s),
        provider_policies=settings.provider_policies,
        transact=group,
        sms_credits=sms_credits_for(settings),
    )
    policy = settings.dispatch_policy
    return Pipeline(
        pool=pool,
        providers=providers,
        dispatch=consumers.dispatch_processor(pool, dispatcher, policy, group),
        confirmations=consumers.confirmation_processor(pool, dispatcher, policy, group),
        status=consumers.status_processor(pool, group),
    )


class Shared:
    """Builds the pipeline on first use; every agent awaits the same one."""

    def __init__(self, settings: StreamsSettings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._pipeline: Pipeline | None = None

    async def get(self) -> Pipeline:
        async with self._lock:
            if self._pipeline is None:
                self._pipeline = await build(self._settings)
            return self._pipeline

    async def close(self) -> None:
        async with self._lock:
            if self._pipeline is not None:
                await self._pipeline.close()
                self._pipeline = None
