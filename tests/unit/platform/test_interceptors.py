"""Per-call handling (ids, identity, deadlines, errors, metrics), health, the side port and graceful stop.

Every test runs the real GrpcServer on 127.0.0.1:0 with a real grpc.aio channel; the only stand-in is the
readiness check, a plain async function the test opens and closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
import structlog
from apptremind_gen.apptremind.scheduler.v1 import GetRequest, GetResponse, Job, ListRequest, ListResponse
from apptremind_platform import deadline
from apptremind_platform.errors import NotFound
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel, service_methods
from apptremind_platform.identity import Caller, current_caller
from apptremind_platform.interceptors import current_request_id
from apptremind_platform.server import GrpcServer, Readiness
from apptremind_platform.settings import ServiceSettings
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

SCHEDULER = "apptremind.scheduler.v1.SchedulerService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SECRET = "password=hunter2"


@dataclass
class Probe:
    """A SchedulerService servicer that records what the platform made visible to it."""

    seen: dict[str, Any] = field(default_factory=dict)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self, request: GetRequest, context: grpc.aio.ServicerContext) -> GetResponse:
        if request.idempotency_key == "missing":
            raise NotFound("job_not_found", "no job with that key", idempotency_key="missing")
        if request.idempotency_key == "boom":
            raise RuntimeError(SECRET)
        self.seen.update(
            caller=current_caller.get(),
            request_id=current_request_id.get(),
            remaining=deadline.remaining(),
            log_context=structlog.contextvars.get_contextvars(),
        )
        return GetResponse(job=Job(job_id="job-1"))

    async def list(self, request: ListRequest, context: grpc.aio.ServicerContext) -> ListResponse:
        self.entered.set()
        await self.release.wait()
        return ListResponse(next_page_token="drained")


@dataclass
class Gate:
    """A readiness check the test controls: blocks until opened, then passes unless `failing`."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    failing: bool = False

    async def __call__(self) -> None:
        await self.opened.wait()
        if self.failing:
            raise ConnectionError("dependency down")


@dataclass
class Stack:
    server: GrpcServer
    probe: Probe
    gate: Gate
    client: AsyncServiceClient
    channel: grpc.aio.Channel


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    probe, gate = Probe(), Gate()
    readiness = Readiness()
    readiness.add("gate", gate)
    settings = ServiceSettings(grpc_port=0, http_port=0, readiness_interval_s=0.01, shutdown_grace_s=5)
    server = GrpcServer(settings, [(probe, SCHEDULER)], readiness)
    await server.start()
    async with open_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stack(server, probe, gate, AsyncServiceClient(channel, SCHEDULER), channel)
        probe.release.set()
        gate.opened.set()
        await server.stop(0)


async def _call_with_trailers(
    channel: grpc.aio.Channel, request: GetRequest, metadata: list[tuple[str, str]] | None = None
) -> tuple[GetResponse, dict[str, Any]]:
    spec = service_methods(SCHEDULER)["Get"]
    call = channel.unary_unary(
        spec.path, request_serializer=GetRequest.SerializeToString, response_deserializer=GetResponse.FromString
    )(request, metadata=metadata)
    response = await call
    return response, dict(await call.trailing_metadata())


async def test_domain_error_becomes_status_with_error_info(stack: Stack) -> None:
    before = REGISTRY.get_sample_value(
        "grpc_server_handled_total", {"service": SCHEDULER, "method": "Get", "code": "NOT_FOUND"}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.client.call("Get", GetRequest(idempotency_key="missing"), metadata=[("x-request-id", "req-1")])

    error = caught.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no job with that key"
    trailers = dict(error.trailing_metadata())
    assert trailers["x-error-reason"] == "job_not_found"
    assert trailers["x-request-id"] == "req-1"

    status = rpc_status.from_call(error)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "job_not_found"
    assert info.domain == "apptremind"
    assert dict(info.metadata) == {"idempotency_key": "missing"}

    after = REGISTRY.get_sample_value(
        "grpc_server_handled_total", {"service": SCHEDULER, "method": "Get", "code": "NOT_FOUND"}
    )
    assert after == (before or 0) + 1


async def test_unexpected_exception_is_internal_without_its_message(stack: Stack) -> None:
    with structlog.testing.capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.client.call("Get", GetRequest(idempotency_key="boom"))

    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET not in (error.details() or "")
    trailers = dict(error.trailing_metadata())
    assert trailers["x-error-reason"] == "internal"
    assert all(SECRET.encode() not in (v if isinstance(v, bytes) else v.encode()) for v in trailers.values())
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(error).details[0].Unpack(info)
    assert info.reason == "internal"

    # The stack goes to the log, and only there.
    unhandled = [entry for entry in logs if entry["event"] == "unhandled_exception"]
    assert len(unhandled) == 1
    assert isinstance(unhandled[0]["exc_info"], RuntimeError)
    access = [entry for entry in logs if entry["event"] == "grpc_call"]
    assert access[-1]["code"] == "INTERNAL"
    assert access[-1]["grpc_method"] == "Get"
    assert access[-1]["duration_ms"] >= 0


async def test_caller_identity_and_request_id_reach_the_handler(stack: Stack) -> None:
    caller = Caller(user_id="user-1", business_id="biz-1", role="owner")
    _, trailers = await _call_with_trailers(
        stack.channel, GetRequest(), [*caller.to_metadata(), ("x-request-id", "req-42")]
    )

    assert stack.probe.seen["caller"] == caller
    assert stack.probe.seen["request_id"] == "req-42"
    assert stack.probe.seen["log_context"]["request_id"] == "req-42"
    assert stack.probe.seen["log_context"]["business_id"] == "biz-1"
    assert trailers["x-request-id"] == "req-42"


async def test_request_id_is_generated_when_missing_or_malformed(stack: Stack) -> None:
    for metadata in (None, [("x-request-id", "not a token\t")]):
        _, trailers = await _call_with_trailers(stack.channel, GetRequest(), metadata)
        generated = stack.probe.seen["request_id"]
        assert len(generated) == 32
        int(generated, 16)
        assert trailers["x-request-id"] == generated
        assert stack.probe.seen["caller"] == Caller()


async def test_client_deadline_is_visible_inside_the_handler(stack: Stack) -> None:
    await stack.client.call("Get", GetRequest(), timeout=30)
    remaining = stack.probe.seen["remaining"]
    assert remaining is not None
    assert 0 < remaining <= 30

    await stack.client.call("Get", GetRequest())
    assert stack.probe.seen["remaining"] is None


async def _next_status(watch: Any) -> int:
    async with asyncio.timeout(10):
        response = await watch.read()
    assert response is not grpc.aio.EOF
    return int(response.status)


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def test_health_follows_readiness(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)
    # The gate is still closed, so no readiness refresh has finished: both start NOT_SERVING.
    for service in ("", SCHEDULER):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == NOT_SERVING

    watch = health.Watch(health_pb2.HealthCheckRequest(service=SCHEDULER))
    assert await _next_status(watch) == NOT_SERVING

    stack.gate.opened.set()
    assert await _next_status(watch) == SERVING
    async with aiohttp.ClientSession() as session:
        status, body = await _get_json(session, f"http://127.0.0.1:{stack.server.http_port}/readyz")
        assert (status, body) == (200, {"ready": True, "checks": {"gate": True}})

        stack.gate.failing = True
        assert await _next_status(watch) == NOT_SERVING
        status, body = await _get_json(session, f"http://127.0.0.1:{stack.server.http_port}/readyz")
        assert (status, body) == (503, {"ready": False, "checks": {"gate": False}})

        stack.gate.failing = False
        assert await _next_status(watch) == SERVING
    watch.cancel()


async def test_side_port_serves_liveness_and_metrics(stack: Stack) -> None:
    await stack.client.call("Get", GetRequest())
    base = f"http://127.0.0.1:{stack.server.http_port}"
    async with aiohttp.ClientSession() as session:
        status, body = await _get_json(session, f"{base}/healthz")
        assert status == 200
        assert body == {"alive": True}

        async with session.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    assert f'grpc_server_handled_total{{code="OK",method="Get",service="{SCHEDULER}"}}' in text
    assert "grpc_server_handling_seconds_bucket" in text


async def test_stop_drains_in_flight_calls_and_refuses_new_ones(stack: Stack) -> None:
    stack.gate.opened.set()
    health = health_pb2_grpc.HealthStub(stack.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    while await _next_status(watch) != SERVING:
        pass

    in_flight = asyncio.create_task(stack.client.call("List", ListRequest(), ListResponse))
    await stack.probe.entered.wait()
    stopping = asyncio.create_task(stack.server.stop(30))

    # NOT_SERVING is announced in the same step that makes grpc stop accepting calls.
    assert await _next_status(watch) == NOT_SERVING
    watch.cancel()
    async with open_channel(f"127.0.0.1:{stack.server.port}") as fresh:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await AsyncServiceClient(fresh, SCHEDULER).call("Get", GetRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    assert not in_flight.done()
    stack.probe.release.set()
    response = await in_flight
    assert response.next_page_token == "drained"
    await stopping
    assert stack.server.stopping
    assert not stack.server.readiness.ready
