"""The edge's only way to the services: one grpc.aio channel per configured service target.

A channel is created on first use (inside the running event loop, which grpc.aio binds it to) and then
reused for every call, so connections and HTTP/2 streams are shared instead of dialled per request.
`health` asks a service's standard `grpc.health.v1.Health/Check` for the whole server (service ""), which
the platform's server flips to SERVING only once its own dependencies answer.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Gauge

from apptremind_platform.logs import get_logger


class HealthStatus(enum.StrEnum):
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    # The service answered but has no overall status, or does not run the health service at all.
    UNKNOWN = "UNKNOWN"
    # No answer within the deadline: down, not listening, or the network is in the way.
    UNREACHABLE = "UNREACHABLE"


UPSTREAM_SERVING = Gauge(
    "edge_upstream_serving", "1 when the service answered its last health check with SERVING", ["service"]
)

# A service that was down must be noticed soon after it comes back: gRPC's default reconnect backoff grows
# to two minutes, which would keep /readyz failing long after the service is healthy again.
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

_log = get_logger("apptremind.edge.upstreams")


class Upstreams:
    """The configured service targets and their channels, shared by every request of the process."""

    def __init__(
        self, targets: Mapping[str, str], *, call_timeout_s: float = 5.0, health_timeout_s: float = 1.0
    ) -> None:
        self._targets = dict(targets)
        self.call_timeout_s = call_timeout_s
        self._health_timeout_s = health_timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def names(self) -> list[str]:
        return list(self._targets)

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to `service`, created on first use; a KeyError for a service not configured."""
        channel = self._channels.get(service)
        if channel is None:
            channel = grpc.aio.insecure_channel(self._targets[service], options=_CHANNEL_OPTIONS)
            self._channels[service] = channel
        return channel

    async def health(self, service: str) -> HealthStatus:
        stub = health_pb2_grpc.HealthStub(self.channel(service))
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._health_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            status = (
                HealthStatus.UNREACHABLE
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                else HealthStatus.UNKNOWN
            )
            # Debug only: readiness probes poll this every few seconds, and /readyz reports the outcome.
            _log.debug("upstream.health_failed", service=service, grpc_code=err.code().name)
        else:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                status = HealthStatus.SERVING
            elif response.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                status = HealthStatus.NOT_SERVING
            else:
                status = HealthStatus.UNKNOWN
        UPSTREAM_SERVING.labels(service).set(1 if status is HealthStatus.SERVING else 0)
        return status

    async def health_all(self) -> dict[str, HealthStatus]:
        """Every configured service's status, asked concurrently, in configuration order."""
        names = self.names
        statuses = await asyncio.gather(*(self.health(name) for name in names))
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(channel.close() for channel in channels.values()))
