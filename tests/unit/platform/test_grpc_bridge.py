"""The betterproto2 <-> grpcio bridge, served by the real GrpcServer on a loopback port, plus reflection."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from apptremind_gen.apptremind.scheduler.v1 import (
    GetRequest,
    GetResponse,
    Job,
    JobState,
    ListRequest,
    ScheduleRequest,
    ScheduleResponse,
)
from apptremind_platform.grpc_bridge import AsyncServiceClient, bind_service, open_channel, service_methods
from apptremind_platform.server import GrpcServer
from apptremind_platform.settings import ServiceSettings
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SCHEDULER = "apptremind.scheduler.v1.SchedulerService"
DUE = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class GetOnlyScheduler:
    """Implements Get only, so every other SchedulerService RPC must be UNIMPLEMENTED."""

    async def get(self, request: GetRequest, context: grpc.aio.ServicerContext) -> GetResponse:
        return GetResponse(
            job=Job(
                job_id="job-1",
                business_id=request.business_id,
                idempotency_key=request.idempotency_key,
                due_at=DUE,
                state=JobState.SCHEDULED,
            )
        )


@pytest.fixture
async def served() -> AsyncIterator[GrpcServer]:
    server = GrpcServer(ServiceSettings(grpc_port=0, http_port=0), [(GetOnlyScheduler(), SCHEDULER)])
    await server.start()
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


def test_bind_service_rejects_servicers_that_cannot_serve() -> None:
    class Nothing:
        pass

    class SyncGet:
        def get(self, request: Any, context: Any) -> Any:
            return None

    with pytest.raises(ValueError, match="implements no RPC"):
        bind_service(Nothing(), SCHEDULER)
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
