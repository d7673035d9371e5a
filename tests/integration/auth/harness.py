"""A started auth-service for tests: the real ServiceRuntime on a fresh database, called over real gRPC.

`Auth` bundles the runtime, its database, its settable clock and a typed client, with helpers for the
steps many tests share (sign up, become the owner of a business, read a refusal's code and reason).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import betterproto2
import grpc
import grpc.aio
import jwt
import pytest

from apptremind_auth.bootstrap import build_spec
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_gen.apptremind.auth.v1 import (
    BusinessDraft,
    RefreshSessionRequest,
    RefreshSessionResponse,
    Session,
    SignUpRequest,
    SignUpResponse,
)
from apptremind_gen.apptremind.events.business.v1 import BusinessCreated
from apptremind_platform.clock import SettableClock
from apptremind_platform.envelope import Event, decode, encode
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.interceptors import ERROR_REASON_KEY
from apptremind_platform.processing import Incoming, MessageProcessor, Outcome
from apptremind_platform.service import ServiceRuntime, ServiceSpec
from tests.fixtures.db import ServiceDb
from tests.fixtures.services import database_for, running_service

M = TypeVar("M", bound=betterproto2.Message)

SERVICE = "apptremind.auth.v1.AuthService"
PASSWORD = "correct horse battery"
ADMIN_TOKEN = "test-admin-" + uuid.uuid4().hex
BUSINESS_CREATED = "business.created.v1"


def draft(**changes: str) -> BusinessDraft:
    values = {
        "name": "Salon Ada",
        "slug": f"salon-{uuid.uuid4().hex[:8]}",
        "time_zone": "Europe/Berlin",
        "locale": "de-DE",
        "currency": "EUR",
    }
    values.update(changes)
    return BusinessDraft(**values)


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def claims(access_token: str) -> dict[str, Any]:
    """The token's claims, read without verifying (the service under test does the verifying)."""
    return jwt.decode(access_token, options={"verify_signature": False})


def kid_of(access_token: str) -> str:
    return str(jwt.get_unverified_header(access_token)["kid"])


def business_created(business_id: str, owner_user_id: str) -> Event:
    """A business.created.v1 as business-service emits it; each call is a new message (a new id)."""
    data = BusinessCreated(
        business_id=business_id,
        name="Salon Ada",
        slug=f"salon-{business_id[:8]}",
        time_zone="Europe/Berlin",
        locale="de-DE",
        currency="EUR",
        owner_user_id=owner_user_id,
    )
    return Event(BUSINESS_CREATED, business_id, data, subject=business_id)


@dataclass(frozen=True)
class Owner:
    user_id: str
    email: str
    business_id: str
    session: Session

    @property
    def token(self) -> str:
        return str(self.session.access_token)


@dataclass
class Auth:
    runtime: ServiceRuntime
    spec: ServiceSpec
    db: ServiceDb
    clock: SettableClock
    client: AsyncServiceClient

    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[M],
        token: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> M:
        pairs = [*metadata, *(bearer(token) if token else [])]
        return await self.client.call(method, request, response_type, metadata=pairs, timeout=30)

    async def refused(
        self,
        method: str,
        request: betterproto2.Message,
        token: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> tuple[grpc.StatusCode, str]:
        """The status code and `x-error-reason` of a call that must fail."""
        pairs = [*metadata, *(bearer(token) if token else [])]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.client.call(method, request, metadata=pairs, timeout=30)
        trailers = {key: value for key, value in info.value.trailing_metadata() or ()}
        return info.value.code(), str(trailers.get(ERROR_REASON_KEY, ""))

    def count(self, query: str, params: tuple[object, ...] = ()) -> int:
        rows = self.db.execute(query, params)
        return int(cast(int, rows[0][0]))

    def outbox(
        self, topic: str | None = None, key: str | None = None
    ) -> list[tuple[str, betterproto2.Message]]:
        """The outbox rows (topic, decoded payload) in commit order, optionally of one topic and key."""
        rows = self.db.execute("SELECT topic, key, payload FROM outbox ORDER BY id")
        return [
            (str(t), decode(str(t), bytes(cast(bytes, payload))).data)
            for t, k, payload in rows
            if (topic is None or t == topic) and (key is None or k == key)
        ]

    def processor(self) -> MessageProcessor:
        """The service's own business.created consumer, fed directly (no broker) by tests that need it."""
        assert self.runtime.pool is not None
        return self.spec.processors[0](self.runtime.pool, self.runtime.settings)

    async def deliver(self, event: Event, offset: int = 0) -> Outcome:
        """Runs one business.created message through the consumer's processing (inbox, handler, DLQ)."""
        message = Incoming(
            event.topic, 0, offset, event.business_id.encode(), encode(event, source="business")
        )
        return await self.processor().process(message)

    async def sign_up(self, email: str | None = None, password: str = PASSWORD) -> SignUpResponse:
        request = SignUpRequest(email=email or new_email(), password=password, business=draft())
        return await self.call("SignUp", request, SignUpResponse)

    async def refresh(self, refresh_token: str) -> Session:
        response = await self.call(
            "RefreshSession", RefreshSessionRequest(refresh_token=refresh_token), RefreshSessionResponse
        )
        assert response.session is not None
        return response.session

    async def owner(self, email: str | None = None) -> Owner:
        """A signed-up user whose business the saga has created, holding a session that lists it."""
        signed = await self.sign_up(email)
        assert signed.user is not None and signed.session is not None
        business_id = str(uuid.uuid4())
        assert await self.deliver(business_created(business_id, signed.user.user_id)) is Outcome.PROCESSED
        session = await self.refresh(signed.session.refresh_token)
        assert claims(session.access_token)["mem"] == {business_id: "owner"}
        return Owner(signed.user.user_id, signed.user.email, business_id, session)


@asynccontextmanager
async def started_auth(
    postgres: PostgresServer,
    kafka: KafkaBroker,
    clock: SettableClock | None = None,
    consume: bool = False,
    **overrides: Any,
) -> AsyncIterator[Auth]:
    """The auth-service with a settable clock and an admin token; `overrides` set AuthSettings fields.

    Without `consume` the Kafka consumer is left out: the tests that do not wait for Kafka feed the same
    processor directly (Auth.deliver), and skip joining the consumer group on every start.
    """
    the_clock = clock or SettableClock(dt.datetime.now(dt.UTC))
    spec = build_spec(clock=the_clock, **{"auth_admin_token": ADMIN_TOKEN, **overrides})
    runtime_spec = spec if consume else dataclasses.replace(spec, processors=())
    db = database_for(postgres, spec)
    async with running_service(runtime_spec, db, kafka) as runtime:
        channel = open_channel(f"127.0.0.1:{runtime.port}")
        try:
            yield Auth(runtime, spec, db, the_clock, AsyncServiceClient(channel, SERVICE))
        finally:
            await channel.close()
