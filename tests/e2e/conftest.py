"""The platform as a user meets it: the real edge app in front of real auth- and business-services, each
on its own database, their outbox relays, and the session's real Kafka broker."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from apptremind_auth.bootstrap import SPEC as AUTH
from apptremind_auth.settings import AuthSettings
from apptremind_billing.bootstrap import SPEC as BILLING
from apptremind_billing.bootstrap import build_spec as build_billing_spec
from apptremind_billing.settings import BillingSettings
from apptremind_booking.bootstrap import SPEC as BOOKING
from apptremind_booking.settings import BookingSettings
from apptremind_business.bootstrap import SPEC as BUSINESS
from apptremind_business.settings import BusinessSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_devstack.postgres import PostgresServer
from apptremind_edge.app import create_app
from apptremind_edge.settings import EdgeSettings
from apptremind_notification.bootstrap import SPEC as NOTIFICATION
from apptremind_platform.service import ServiceRuntime, ServiceSpec
from apptremind_platform.service_credentials import secret_digest
from apptremind_platform.settings import ServiceSettings
from apptremind_scheduler.bootstrap import SPEC as SCHEDULER
from tests.fixtures.db import ServiceDb
from tests.fixtures.relay import running_relay
from tests.fixtures.services import database_for, settings_for


class GraphQLError(AssertionError):
    pass


SPECS: dict[str, ServiceSpec] = {
    "auth": AUTH,
    "business": BUSINESS,
    "booking": BOOKING,
    "scheduler": SCHEDULER,
    "notification": NOTIFICATION,
    "billing": BILLING,
}


@dataclass
class Platform:
    postgres: PostgresServer
    kafka: KafkaBroker
    dbs: dict[str, ServiceDb]
    ports: dict[str, int]
    client: httpx.AsyncClient
    runtimes: dict[str, ServiceRuntime] = field(default_factory=dict)
    specs: dict[str, ServiceSpec] = field(default_factory=lambda: dict(SPECS))
    group_suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Each service's client secret for service tokens (ADR 0013); auth-service is given their hashes.
    client_secrets: dict[str, str] = field(default_factory=lambda: {n: secrets.token_hex(32) for n in SPECS})
    # Settings fields for this platform's booking-service (e.g. a short hold, a bigger pool).
    booking_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def auth_db(self) -> ServiceDb:
        return self.dbs["auth"]

    @property
    def business_db(self) -> ServiceDb:
        return self.dbs["business"]

    async def start(self, name: str) -> None:
        spec = self.specs[name]
        settings: ServiceSettings = settings_for(
            spec,
            self.dbs[name],
            self.kafka,
            grpc_port=self.ports[name],
            auth_target=f"127.0.0.1:{self.ports['auth']}",
            # Each test's services form their own groups, starting at the end of the shared session topics;
            # a restarted service resumes where its group stopped.
            consumer_group=f"{name}-{self.group_suffix}",
            consumer_offset_reset="latest",
            service_client_secret=SecretStr(self.client_secrets[name]),
        )
        if name == "auth":
            clients = ",".join(f"{n}:{secret_digest(s)}" for n, s in self.client_secrets.items())
            settings = AuthSettings(**settings.model_dump(), auth_service_clients=clients)
        if name == "business":
            # Staff seats are billing-service's answer; a platform started without billing switches the
            # check off explicitly (its tests add staff beyond the free plan and are not about billing).
            checked = "billing" in self.dbs
            settings = BusinessSettings(**settings.model_dump(), billing_seat_check=checked)
            if checked:
                settings = settings.model_copy(
                    update={"billing_target": f"127.0.0.1:{self.ports['billing']}"}
                )
        if name == "booking":
            settings = BookingSettings(
                **settings.model_dump()
                | {"booking_billing_target": f"127.0.0.1:{self.ports['billing']}"}
                | self.booking_overrides
            )
        runtime = ServiceRuntime(spec, settings)
        await runtime.start()
        await runtime.consumers_assigned()
        self.runtimes[name] = runtime

    async def stop(self, name: str) -> None:
        await self.runtimes.pop(name).stop(0)

    async def gql(self, query: str, token: str = "", ip: str = "", **variables: Any) -> dict[str, Any]:
        """The response body; errors are returned, not raised."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(self, query: str, token: str = "", **variables: Any) -> dict[str, Any]:
        body = await self.gql(query, token, **variables)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def eventually(
        self, query: str, token: str, check: Any, timeout_s: float = 60.0, **variables: Any
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            data = await self.ok(query, token, **variables)
            if check(data):
                return data
            assert asyncio.get_running_loop().time() < deadline, f"never true: {data}"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def platform_running(
    postgres: PostgresServer,
    kafka: KafkaBroker,
    services: tuple[str, ...] = ("auth", "business"),
    ports: dict[str, int] | None = None,
    billing: BillingSettings | None = None,
    booking_overrides: dict[str, Any] | None = None,
    **edge: Any,
) -> AsyncIterator[Platform]:
    """The edge in front of `services` (started in order), each with its database and its relay;
    `billing` gives billing-service its Stripe settings (stripe-mock, webhook secret, prices),
    `booking_overrides` booking-service's own settings."""
    specs = dict(SPECS)
    if billing is not None:
        specs["billing"] = build_billing_spec(billing=billing)
    dbs = {name: database_for(postgres, specs[name]) for name in services}
    ports = ports or {name: free_port() for name in SPECS}
    async with AsyncExitStack() as stack:
        for db in dbs.values():
            stack.enter_context(running_relay(db.dsn, kafka, idle_sleep_s=0.02))
        app = create_app(
            EdgeSettings(service_targets={name: f"127.0.0.1:{port}" for name, port in ports.items()}, **edge)
        )
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")
        )
        platform = Platform(
            postgres, kafka, dbs, ports, client, specs=specs, booking_overrides=dict(booking_overrides or {})
        )
        try:
            for name in services:
                await platform.start(name)
            yield platform
        finally:
            for name in list(platform.runtimes):
                await platform.stop(name)


@pytest.fixture
async def platform(postgres: PostgresServer, kafka: KafkaBroker) -> AsyncIterator[Platform]:
    async with platform_running(postgres, kafka) as p:
        yield p
