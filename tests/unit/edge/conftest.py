"""Fixtures of the edge's unit tests: a real in-process grpc.aio server running the standard health service,
and the edge app driven in-process through httpx's ASGI transport (lifespan included), on the test's own
event loop, which grpc.aio channels are bound to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc.aio
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from starlette.applications import Starlette

from apptremind_devstack.ports import free_port
from apptremind_edge.app import create_app
from apptremind_edge.settings import EdgeSettings


@dataclass
class HealthServer:
    target: str
    servicer: Any

    async def set(self, status: int) -> None:
        await self.servicer.set("", status)


@pytest.fixture
async def health_server() -> AsyncIterator[HealthServer]:
    """A gRPC server whose overall health ("") is SERVING until the test says otherwise."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield HealthServer(f"127.0.0.1:{port}", servicer)
    await server.stop(grace=None)


@pytest.fixture
def dead_target() -> str:
    """A target nothing listens on: connecting is refused, so its health is UNREACHABLE."""
    return f"127.0.0.1:{free_port()}"


@dataclass
class Edge:
    app: Starlette
    client: httpx.AsyncClient


EdgeFactory = Callable[..., AbstractAsyncContextManager[Edge]]


@pytest.fixture
def edge() -> EdgeFactory:
    """Open the edge app with the given settings; the lifespan runs, so channels are closed at the end."""

    @asynccontextmanager
    async def open_edge(**settings: Any) -> AsyncIterator[Edge]:
        app = create_app(EdgeSettings(**settings))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as client,
        ):
            yield Edge(app, client)

    return open_edge


@asynccontextmanager
async def unary_server(
    service: str, method: str, handler: Callable[..., Awaitable[bytes]], interceptors: Sequence[Any] = ()
) -> AsyncIterator[str]:
    """A real gRPC server with one unary method taking and returning raw bytes; yields its target."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                service, {method: grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
