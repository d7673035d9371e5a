"""The betterproto2 <-> grpcio bridge, served by the real GrpcServer on a loopback port, plus reflection."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from apptremind_gen.apptremind.scheduler.v1 import (
    GetRequest,
    GetResponse,
    Job,
    JobState,
    ListRequest,
    ScheduleRequest,
    ScheduleResponse,
)
from apptremind_platform import deadline
from apptremind_platform.grpc_bridge import (
    AsyncServiceClient,
    bind_service,
    open_channel,
    outgoing_metadata,
    outgoing_timeout,
    service_methods,
)
from apptremind_platform.identity import Caller, current_caller
from apptremind_platform.interceptors import current_request_id
from apptremind_platform.server import GrpcServer
from apptremind_platform.settings import ServiceSettings
from tests.fixtures.tokens import SigningKeys

SCHEDULER = "apptremind.scheduler.v1.SchedulerService"
DUE = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class GetOnlyScheduler:
    """Implements Get only, so every other SchedulerService RPC must be UNIMPLEMENTED.

    Get with key "relay" calls Get on `relay_port` through the bridge's client, as a service calling another
    service while handling a request would; the inner call records what it inherited.
    """

    def __init__(self) -> None:
        self.relay_port = 0
        self.inherited: list[tuple[str, Caller, float | None]] = []
        # Get with key "slow" takes 0.5 s; how many ran at once, at most.
        self.running = 0
        self.most_running = 0

    async def get(self, request: GetRequest, context: grpc.aio.ServicerContext) -> GetResponse:
        if request.idempotency_key == "relay":
            async with open_channel(f"127.0.0.1:{self.relay_port}") as channel:
                return await AsyncServiceClient(channel, SCHEDULER).call(
                    "Get", GetRequest(business_id=request.business_id, idempotency_key="inner"), GetResponse
                )
        if request.idempotency_key == "slow":
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            await asyncio.sleep(0.5)
            self.running -= 1
        if request.idempotency_key == "inner":
            self.inherited.append((current_request_id.get(), current_caller.get(), deadline.remaining()))
        return GetResponse(
            job=Job(
                job_id="job-1",
                business_id=request.business_id,
                idempotency_key=request.idempotency_key,
                due_at=DUE,
                state=JobState.SCHEDULED,
            )
        )


KEYS = SigningKeys()


@pytest.fixture
async def servicer() -> GetOnlyScheduler:
    return GetOnlyScheduler()


@pytest.fixture
async def served(servicer: GetOnlyScheduler) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(
        ServiceSettings(grpc_port=0, http_port=0), [(servicer, SCHEDULER)], verifier=KEYS.verifier()
    )
    await server.start()
    servicer.relay_port = server.port
    yield server
    await server.stop(0)


@pytest.fixture
async def client(served: GrpcServer) -> AsyncIterator[AsyncServiceClient]:
    async with open_channel(f"127.0.0.1:{served.port}") as channel:
        yield AsyncServiceClient(channel, SCHEDULER)


def test_service_methods_come_from_the_generated_descriptors() -> None:
    methods = service_methods(SCHEDULER)
    assert set(methods) == {"Schedule", "Cancel", "Get", "List"}
    assert methods["Get"].path == f"/{SCHEDULER}/Get"
    assert methods["Get"].request_type is GetRequest
    assert methods["Get"].response_type is GetResponse
    assert service_methods("apptremind.auth.v1.AuthService")["GetJwks"].attribute == "get_jwks"


async def test_a_servicer_without_rpcs_answers_unimplemented() -> None:
    class Nothing:
        pass

    server = GrpcServer(ServiceSettings(grpc_port=0, http_port=0), [(Nothing(), SCHEDULER)])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            client = AsyncServiceClient(channel, SCHEDULER)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.call("Get", GetRequest(business_id="b", idempotency_key="k"))
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)


def test_bind_service_rejects_servicers_that_cannot_serve() -> None:
    class SyncGet:
        def get(self, request: Any, context: Any) -> Any:
            return None

    with pytest.raises(TypeError, match="async def"):
        bind_service(SyncGet(), SCHEDULER)
    with pytest.raises(LookupError):
        bind_service(GetOnlyScheduler(), "apptremind.scheduler.v1.NoSuchService")


async def test_bridged_method_answers_typed_responses(client: AsyncServiceClient) -> None:
    response = await client.call("Get", GetRequest(business_id="biz-1", idempotency_key="k-1"), GetResponse)

    assert isinstance(response, GetResponse)
    assert response.job is not None
    assert response.job.job_id == "job-1"
    assert response.job.business_id == "biz-1"
    assert response.job.idempotency_key == "k-1"
    assert response.job.due_at == DUE
    assert response.job.state == JobState.SCHEDULED


async def test_max_inflight_queues_calls_and_starts_each_deadline_when_sent(
    served: GrpcServer, servicer: GetOnlyScheduler
) -> None:
    async with open_channel(f"127.0.0.1:{served.port}") as channel:
        client = AsyncServiceClient(channel, SCHEDULER, max_inflight=2)
        # Eight calls of 0.5 s, two at a time: the last two wait 1.5 s before they are sent, more than
        # each call's 1.2 s timeout, so they succeed only if a call's deadline starts when it is sent,
        # not when it starts waiting. A loaded machine only lengthens that wait; a call itself has
        # 0.7 s to spare.
        responses = await asyncio.gather(
            *(
                client.call(
                    "Get", GetRequest(business_id="b", idempotency_key="slow"), GetResponse, timeout=1.2
                )
                for _ in range(8)
            )
        )

    assert len(responses) == 8
    assert servicer.most_running == 2


async def test_methods_the_servicer_lacks_are_unimplemented(client: AsyncServiceClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.call("Schedule", ScheduleRequest(business_id="biz-1"), ScheduleResponse)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_client_refuses_wrong_request_types_and_unknown_methods(client: AsyncServiceClient) -> None:
    with pytest.raises(TypeError, match="takes GetRequest"):
        await client.call("Get", ListRequest())
    with pytest.raises(TypeError, match="returns GetResponse"):
        await client.call("Get", GetRequest(), ScheduleResponse)
    with pytest.raises(LookupError):
        await client.call("Nope", GetRequest())


async def test_calls_made_while_handling_inherit_request_id_caller_and_deadline(
    client: AsyncServiceClient, servicer: GetOnlyScheduler
) -> None:
    caller = KEYS.caller("user-7", {"biz-7": "staff"})
    response = await client.call(
        "Get",
        GetRequest(business_id="biz-7", idempotency_key="relay"),
        GetResponse,
        metadata=[*caller.to_metadata(), ("x-request-id", "req-chain")],
        timeout=20,
    )

    assert response.job is not None
    assert response.job.idempotency_key == "inner"
    [(request_id, inner_caller, remaining)] = servicer.inherited
    assert request_id == "req-chain"
    assert inner_caller == caller
    assert remaining is not None
    assert 0 < remaining < 21


def test_outgoing_metadata_keeps_explicit_values() -> None:
    assert outgoing_metadata() == []
    assert outgoing_timeout(None) is None
    request_token = current_request_id.set("req-1")
    caller_token = current_caller.set(Caller(user_id="u", memberships={"b": "owner"}, token="jwt-u"))
    try:
        with deadline.scope(2):
            pairs = outgoing_metadata([("x-custom", "kept")])
            left = outgoing_timeout(None)
            assert left is not None
            assert left <= 2
            assert outgoing_timeout(60) == pytest.approx(left, abs=0.5)
            assert outgoing_timeout(0.5) == 0.5
    finally:
        current_caller.reset(caller_token)
        current_request_id.reset(request_token)
    assert sorted(pairs) == [
        ("authorization", "Bearer jwt-u"),
        ("x-custom", "kept"),
        ("x-request-id", "req-1"),
    ]


def _reflect(port: int) -> tuple[list[str], Any, Any, Any]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        file_proto = database.FindFileContainingSymbol(SCHEDULER)
        # A pool backed by the reflection database resolves imports on demand, as grpcurl's describe does.
        pool = descriptor_pool.DescriptorPool(database)
        job = pool.FindMessageTypeByName("apptremind.scheduler.v1.Job")
        health = pool.FindServiceByName("grpc.health.v1.Health")
        return services, file_proto, job, health


async def test_reflection_lists_and_describes_services(served: GrpcServer) -> None:
    services, file_proto, job, health = await asyncio.to_thread(_reflect, served.port)

    assert SCHEDULER in services
    assert "grpc.health.v1.Health" in services
    assert "grpc.reflection.v1alpha.ServerReflection" in services
    assert file_proto.name == "apptremind/scheduler/v1/scheduler.proto"
    assert [s.name for s in file_proto.service] == ["SchedulerService"]
    assert job.fields_by_name["due_at"].message_type.full_name == "google.protobuf.Timestamp"
    assert job.fields_by_name["payload"].message_type.full_name == "google.protobuf.Any"
    assert {"Check", "Watch"} <= {m.name for m in health.methods}
