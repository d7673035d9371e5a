"""Runs one service process: pool, readiness (DB + Kafka), gRPC server, consumers, graceful shutdown.

Each service's bootstrap.py describes itself with a ServiceSpec and calls `main(spec)`; nothing else in a
service builds these pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from .access_tokens import JwksSource, TokenVerifier, remote_jwks
from .consumer import KafkaConsumerRunner
from .db import open_pool
from .logs import configure_logging, get_logger
from .processing import MessageProcessor
from .server import GrpcServer, Readiness, db_check, kafka_check
from .settings import ServiceSettings
from .tracing import configure_tracing

log = get_logger(__name__)

ServicerFactory = Callable[[AsyncConnectionPool], Sequence[tuple[object, str]]]
JwksFactory = Callable[[AsyncConnectionPool], JwksSource]
ProcessorFactory = Callable[[AsyncConnectionPool], MessageProcessor]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    servicers: ServicerFactory
    sql_dir: Path | None = None
    processors: Sequence[ProcessorFactory] = field(default_factory=tuple)
    # Where signing keys come from; by default the auth-service over gRPC (auth-service reads its own).
    jwks: JwksFactory | None = None


async def serve(spec: ServiceSpec, settings: ServiceSettings) -> None:
    pool = await open_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max, name=spec.name)
    readiness = Readiness()
    readiness.add("db", db_check(pool))
    readiness.add("kafka", kafka_check(settings.kafka.bootstrap_servers))
    jwks = spec.jwks(pool) if spec.jwks is not None else remote_jwks(settings.auth_target)
    server = GrpcServer(settings, spec.servicers(pool), readiness, TokenVerifier(jwks))
    stop_consumers = asyncio.Event()
    consumers = [
        asyncio.create_task(
            KafkaConsumerRunner(make(pool), settings.kafka.bootstrap_servers, group_id=spec.name).run(
                stop_consumers
            ),
            name=f"consumer-{i}",
        )
        for i, make in enumerate(spec.processors)
    ]
    try:
        await server.start()
        await server.serve_until_signal()
    finally:
        stop_consumers.set()
        await asyncio.gather(*consumers, return_exceptions=True)
        await pool.close()
        log.info("service_stopped")


def main(spec: ServiceSpec) -> None:
    settings = ServiceSettings(service_name=spec.name)
    configure_logging(spec.name, settings.log_level)
    configure_tracing(spec.name, settings.otel_exporter)
    asyncio.run(serve(spec, settings))
