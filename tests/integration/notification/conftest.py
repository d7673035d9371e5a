"""Fixtures of the notification tests: the real service (real Postgres, real Kafka, real signed tokens), a
real gRPC booking stand-in, the real SMTP sink and Twilio-shaped SMS server, and the dispatch pipeline
sending through the real providers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.sms_server import SmsServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_notification.booking_client import GrpcBooking
from apptremind_notification.bootstrap import build_spec
from apptremind_notification.channels.base import Provider
from apptremind_notification.channels.email import SmtpProvider
from apptremind_notification.channels.sms import TwilioProvider
from apptremind_notification.dispatch import Dispatcher
from apptremind_notification.grpc import SERVICE
from apptremind_notification.settings import NotificationSettings
from apptremind_platform.clock import SettableClock
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.service import ServiceRuntime
from tests.fixtures.db import ServiceDb
from tests.fixtures.services import database_for, running_service
from tests.fixtures.tokens import SigningKeys
from tests.integration.notification.support import NOW, SMS_TOKEN, BookingStub, serving_booking


@dataclass
class Notification:
    runtime: ServiceRuntime
    db: ServiceDb
    client: AsyncServiceClient
    keys: SigningKeys
    clock: SettableClock
    booking: BookingStub
    booking_client: GrpcBooking
    dispatcher: Dispatcher
    smtp: SmtpSink
    sms: SmsServer

    def metadata(self, user_id: str, memberships: dict[str, str]) -> list[tuple[str, str]]:
        return list(self.keys.caller(user_id, memberships).to_metadata())

    def delivery(self, business_id: str, key: str) -> tuple[str, str, int]:
        """(status, skip_reason, attempts) of the delivery with this idempotency key."""
        [(status, reason, attempts)] = self.db.execute(
            "SELECT status, skip_reason, attempts FROM delivery WHERE business_id = %s AND idempotency_key = %s",
            (business_id, key),
        )
        return str(status), str(reason), int(attempts)  # type: ignore[call-overload]

    def outbox_topics(self, business_id: str) -> list[str]:
        rows = self.db.execute("SELECT topic FROM outbox WHERE key = %s ORDER BY id", (business_id,))
        return [str(r[0]) for r in rows]


@pytest.fixture(scope="package")
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="package")
def sms_server() -> Iterator[SmsServer]:
    with SmsServer(auth_token=SMS_TOKEN) as server:
        yield server


@pytest.fixture(scope="package")
async def notification(
    postgres: PostgresServer, kafka: KafkaBroker, smtp_sink: SmtpSink, sms_server: SmsServer
) -> AsyncIterator[Notification]:
    keys = SigningKeys()
    clock = SettableClock(NOW)
    stub = BookingStub()
    async with serving_booking(stub) as booking_target, open_channel(booking_target) as booking_channel:
        booking = GrpcBooking(booking_channel, timeout_s=10)
        settings = NotificationSettings(sms_auth_token=SMS_TOKEN)
        spec = build_spec(clock=clock, booking=booking, settings=settings)
        db = database_for(postgres, spec)
        providers: dict[str, Provider] = {
            "email": SmtpProvider(
                "smtp",
                "127.0.0.1",
                smtp_sink.port,
                sender="ApptRemind <no-reply@apptremind.test>",
                ca_file=str(smtp_sink.ca_file),
            ),
            "sms": TwilioProvider(
                "sms", sms_server.base_url, sms_server.account_sid, SMS_TOKEN, "+15005550006"
            ),
        }
        async with (
            running_service(
                spec,
                db,
                kafka,
                jwks=keys.jwks,
                db_pool_max=10,
                # Its own group at the end of the session's topics: not the default "notification" group,
                # and not the backlog of billing.entitlements.changed.v1 that earlier packages left, which
                # it would otherwise still be consuming (dedupe counters included) while the tests publish.
                # The tests that publish wait for its assignment first (test_entitlements.bootstrap).
                consumer_group=f"notification-{uuid.uuid4().hex[:8]}",
                consumer_offset_reset="latest",
            ) as runtime,
            open_channel(f"127.0.0.1:{runtime.port}") as channel,
        ):
            assert runtime.pool is not None
            dispatcher = Dispatcher(
                runtime.pool, providers, booking, clock, late_after=dt.timedelta(minutes=5)
            )
            try:
                yield Notification(
                    runtime,
                    db,
                    AsyncServiceClient(channel, SERVICE),
                    keys,
                    clock,
                    stub,
                    booking,
                    dispatcher,
                    smtp_sink,
                    sms_server,
                )
            finally:
                for provider in providers.values():
                    await provider.aclose()


@pytest.fixture
def harness(notification: Notification) -> Notification:
    notification.clock.set(NOW)
    notification.booking.unavailable = 0
    notification.smtp.fail_ratio = 0.0
    notification.sms.fail_ratio = 0.0
    return notification
