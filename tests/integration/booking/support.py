"""Shared helpers for the booking-service tests: a harness around one running service, a read model fed
through the real consumer with real business events, outbox inspection and error assertions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import betterproto2
import grpc
import grpc.aio
import pytest

from apptremind_booking import events
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.business import v1 as business_pb
from apptremind_gen.apptremind.common.v1 import Channel
from apptremind_gen.apptremind.events.business import v1 as business_ev
from apptremind_platform.clock import SettableClock
from apptremind_platform.envelope import Event, decode, encode, headers_for
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.processing import Incoming, Outcome
from apptremind_platform.service import ServiceRuntime, ServiceSpec
from tests.fixtures.db import ServiceDb
from tests.fixtures.tokens import SigningKeys

M = TypeVar("M", bound=betterproto2.Message)
Metadata = list[tuple[str, str]]

TOKEN_SECRET = "test-booking-token-secret"
# Monday 2030-06-03 06:00 UTC (08:00 in Berlin): every test starts here.
NOW = dt.datetime(2030, 6, 3, 6, 0, tzinfo=dt.UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def incoming(event: Event, offset: int = 0) -> Incoming:
    """The record a consumer would receive for `event`, headers included."""
    headers = [(k, v.encode()) for k, v in headers_for(event).items()]
    return Incoming(
        event.topic,
        0,
        offset,
        event.business_id.encode(),
        encode(event, source="business"),
        headers=headers,
    )


def interval(weekday: int, start: str, end: str) -> business_pb.WeeklyInterval:
    return business_pb.WeeklyInterval(weekday=weekday, start_time=start, end_time=end)


@dataclass(frozen=True)
class Tenant:
    business_id: str
    staff_ids: list[str]
    service_id: str
    owner: Metadata


@dataclass
class Catalog:
    """One business as business-service would announce it."""

    time_zone: str = "Europe/Berlin"
    hours: Sequence[business_pb.WeeklyInterval] = field(
        default_factory=lambda: [interval(d, "09:00", "17:00") for d in range(1, 8)]
    )
    staff: int = 1
    duration: int = 30
    buffer_before: int = 0
    buffer_after: int = 10
    offsets: Sequence[int] = (1440, 120)
    channels: Sequence[Channel] = (Channel.EMAIL, Channel.SMS)
    quiet: tuple[str, str] = ("21:00", "08:00")

    def events(self, business_id: str, staff_ids: list[str], service_id: str) -> list[Event]:
        out = [
            Event(
                events.BUSINESS_CREATED,
                business_id,
                business_ev.BusinessCreated(
                    business_id=business_id,
                    name="Hair by Ana",
                    slug=f"shop-{business_id[:8]}",
                    time_zone=self.time_zone,
                    currency="EUR",
                ),
            )
        ]
        for n, staff_id in enumerate(staff_ids):
            out.append(
                Event(
                    events.STAFF_CHANGED,
                    business_id,
                    business_ev.StaffChanged(
                        staff=business_pb.Staff(
                            staff_id=staff_id, business_id=business_id, name=f"Sam {n}", active=True
                        )
                    ),
                )
            )
            out.append(
                Event(
                    events.SCHEDULE_CHANGED,
                    business_id,
                    business_ev.ScheduleChanged(
                        business_id=business_id,
                        staff_id=staff_id,
                        hours=list(self.hours),
                        breaks=[interval(d, "12:00", "12:30") for d in range(1, 8)],
                    ),
                )
            )
        out.append(
            Event(
                events.SERVICE_CHANGED,
                business_id,
                business_ev.ServiceChanged(
                    service=business_pb.Service(
                        service_id=service_id,
                        business_id=business_id,
                        name="Cut",
                        duration_minutes=self.duration,
                        buffer_before_minutes=self.buffer_before,
                        buffer_after_minutes=self.buffer_after,
                        staff_ids=staff_ids,
                        active=True,
                    )
                ),
            )
        )
        out.append(
            Event(
                events.REMINDER_POLICY_CHANGED,
                business_id,
                business_ev.ReminderPolicyChanged(
                    policy=business_pb.ReminderPolicy(
                        business_id=business_id,
                        offsets_minutes=list(self.offsets),
                        channels=list(self.channels),
                        quiet_hours_start=self.quiet[0],
                        quiet_hours_end=self.quiet[1],
                    )
                ),
            )
        )
        return out


@dataclass
class Harness:
    runtime: ServiceRuntime
    db: ServiceDb
    client: AsyncServiceClient
    keys: SigningKeys
    clock: SettableClock
    spec: ServiceSpec

    def metadata(self, user_id: str, memberships: dict[str, str]) -> Metadata:
        return list(self.keys.caller(user_id, memberships).to_metadata())

    async def feed(self, *items: Event) -> None:
        """Deliver business events through the real read-model consumer."""
        assert self.runtime.pool is not None
        processor = self.spec.processors[0](self.runtime.pool, self.runtime.settings)
        for n, event in enumerate(items):
            assert await processor.process(incoming(event, n)) is Outcome.PROCESSED

    async def tenant(self, catalog: Catalog | None = None) -> Tenant:
        catalog = catalog or Catalog()
        business_id = str(uuid.uuid4())
        staff_ids = sorted(str(uuid.uuid4()) for _ in range(catalog.staff))
        service_id = str(uuid.uuid4())
        await self.feed(*catalog.events(business_id, staff_ids, service_id))
        owner = self.metadata(str(uuid.uuid4()), {business_id: "owner"})
        return Tenant(business_id, staff_ids, service_id, owner)

    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[M],
        metadata: Metadata | None = None,
    ) -> M:
        return await self.client.call(method, request, response_type, metadata=metadata, timeout=20)

    async def book(
        self,
        tenant: Tenant,
        start: dt.datetime,
        *,
        key: str | None = None,
        email: str = "kim@example.com",
        phone: str = "+4915112345678",
        staff_id: str | None = None,
        name: str = "Kim",
    ) -> pb.BookAppointmentResponse:
        return await self.call(
            "BookAppointment",
            pb.BookAppointmentRequest(
                business_id=tenant.business_id,
                service_id=tenant.service_id,
                staff_id=tenant.staff_ids[0] if staff_id is None else staff_id,
                start_time=start,
                customer=pb.Customer(
                    name=name, email=email, phone=phone, time_zone="Europe/London", locale="en-GB"
                ),
                idempotency_key=key or uuid.uuid4().hex,
            ),
            pb.BookAppointmentResponse,
        )

    def events(self, topic: str, business_id: str) -> list[Any]:
        """The payloads of the outbox rows of `topic` for one business, in commit order."""
        rows = self.db.execute(
            "SELECT payload FROM outbox WHERE topic = %s AND key = %s ORDER BY id", (topic, business_id)
        )
        payloads = [row[0] for row in rows]
        assert all(isinstance(p, bytes) for p in payloads)
        return [decode(topic, p).data for p in payloads if isinstance(p, bytes)]

    def topics(self, business_id: str) -> list[str]:
        rows = self.db.execute("SELECT topic FROM outbox WHERE key = %s ORDER BY id", (business_id,))
        return [str(row[0]) for row in rows]

    def count(self, table: str, business_id: str) -> int:
        [(n,)] = self.db.execute(f"SELECT count(*) FROM {table} WHERE business_id = %s", (business_id,))
        assert isinstance(n, int)
        return n


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailers = dict(info.value.trailing_metadata() or ())
    assert (info.value.code(), trailers.get("x-error-reason")) == (code, reason), info.value.details()
