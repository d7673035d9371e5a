"""Runs one service process: pool, readiness (DB + Kafka), gRPC server, consumers, graceful shutdown.

Each service's bootstrap.py describes itself with a ServiceSpec and calls `main(spec)`; nothing else in a
service builds these pieces. Tests start the same `ServiceRuntime` in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from .access_tokens import JwksSource, TokenVerifier, remote_jwks
from .background import BackgroundTask
from .consumer import KafkaConsumerRunner
from .db import open_pool
from .logs import configure_logging, get_logger
from .processing import MessageProcessor
from .server import GrpcServer, Readiness, db_check, kafka_check
from .settings import ServiceSettings
from .tracing import configure_tracing

log = get_logger(__name__)

ServicerFactory = Callable[[AsyncConnectionPool, ServiceSettings], Sequence[tuple[object, str]]]
ProcessorFactory = Callable[[AsyncConnectionPool, ServiceSettings], MessageProcessor]
JwksFactory = Callable[[AsyncConnectionPool, ServiceSettings], JwksSource]
BackgroundFactory = Callable[[AsyncConnectionPool, ServiceSettings], BackgroundTask]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    servicers: ServicerFactory
    sql_dir: Path | None = None
    processors: Sequence[ProcessorFactory] = field(default_factory=tuple)
    # Where signing keys come from; by default the auth-service over gRPC (auth-service reads its own).
    jwks: JwksFactory | None = None
    # Housekeeping and workers that run for the life of the process (see background.py).
    background: Sequence[BackgroundFactory] = field(default_factory=tuple)


class ServiceRuntime:
    """Everything one service process runs, startable and stoppable as a unit."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings, jwks: JwksSource | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self._jwks = jwks
        self.pool: AsyncConnectionPool | None = None
        self.server: GrpcServer | None = None
        self._stopping = asyncio.Event()
        self.consumers: list[KafkaConsumerRunner] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings, spec = self.settings, self.spec
        pool = await open_pool(
            settings.database_url, settings.db_pool_min, settings.db_pool_max, name=spec.name
        )
        self.pool = pool
        readiness = Readiness()
        readiness.add("db", db_check(pool))
        readiness.add("kafka", kafka_check(settings.kafka.bootstrap_servers))
        jwks = self._jwks or (spec.jwks(pool, settings) if spec.jwks else remote_jwks(settings.auth_target))
        self.server = GrpcServer(settings, spec.servicers(pool, settings), readiness, TokenVerifier(jwks))
        await self.server.start()
        self.consumers = [
            KafkaConsumerRunner(
                make(pool, settings),
                settings.kafka.bootstrap_servers,
                settings.consumer_group or spec.name,
                offset_reset=settings.consumer_offset_reset,
            )
            for make in spec.processors
        ]
        self._tasks = [
            asyncio.create_task(c.run(self._stopping), name=f"{spec.name}-consumer-{i}")
            for i, c in enumerate(self.consumers)
        ]
        self._tasks += [
            asyncio.create_task(make(pool, settings)(self._stopping), name=f"{spec.name}-background-{i}")
            for i, make in enumerate(spec.background)
        ]

    async def consumers_assigned(self, timeout_s: float = 60.0) -> None:
        """Waits until every consumer holds its partitions (tests produce only after this)."""
        await asyncio.wait_for(asyncio.gather(*(c.assigned.wait() for c in self.consumers)), timeout_s)

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.port

    async def stop(self, grace: float | None = None) -> None:
        self._stopping.set()
        if self.server is not None:
            await self.server.stop(grace)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
        log.info("service_stopped")

    async def serve_until_signal(self) -> None:
        await self.start()
        assert self.server is not None
        try:
            await self.server.serve_until_signal()
        finally:
            await self.stop(0)


def main(spec: ServiceSpec) -> None:
    settings = ServiceSettings(service_name=spec.name)
    configure_logging(spec.name, settings.log_level)
    configure_tracing(spec.name, settings.otel_exporter)
    asyncio.run(ServiceRuntime(spec, settings).serve_until_signal())
