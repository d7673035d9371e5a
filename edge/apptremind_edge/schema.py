"""The GraphQL schema the edge serves.

Resolvers hold no business state: each one asks services over gRPC (through `EdgeContext.upstreams`)
and shapes the answer. The exported SDL lives in `edge/schema.graphql` (see `export_schema`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.extensions import QueryDepthLimiter
from strawberry.types import ExecutionContext

from .errors import ErrorCodes, log_errors
from .upstreams import Upstreams


@dataclass(slots=True)
class EdgeContext:
    """What every resolver can reach: the HTTP request and the shared service channels."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    upstreams: Upstreams

    @property
    def request_id(self) -> str:
        """The id `RequestObservability` gave this request, to forward to services in gRPC metadata."""
        return str(getattr(self.request.state, "request_id", ""))


@strawberry.type(description="One backing service as the edge sees it right now.")
class ServiceHealth:
    service: str = strawberry.field(description="The service's name in the edge's service targets.")
    status: str = strawberry.field(
        description=(
            "SERVING, NOT_SERVING, UNKNOWN (answered without an overall status, or runs no health "
            "service) or UNREACHABLE (no answer within the health-check deadline)."
        )
    )


async def resolve_platform_health(info: strawberry.Info[EdgeContext, None]) -> list[ServiceHealth]:
    statuses = await info.context.upstreams.health_all()
    return [ServiceHealth(service=name, status=status.value) for name, status in statuses.items()]


@strawberry.type
class Query:
    # resolver= rather than the decorator form: the decorator is untyped without strawberry's mypy plugin.
    platform_health: list[ServiceHealth] = strawberry.field(
        resolver=resolve_platform_health,
        description="The standard gRPC health status of every service the edge is configured to call.",
    )


class EdgeSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry's default logs every error with a traceback through stdlib logging; a client's bad
        # input is not an edge failure, so log through structlog at a level that says whose fault it was.
        log_errors(errors)


def build_schema(max_query_depth: int = 10) -> strawberry.Schema:
    extensions: list[Any] = [
        # Factories, not instances: strawberry gives each operation its own extension objects.
        functools.partial(QueryDepthLimiter, max_depth=max_query_depth),
        ErrorCodes,
    ]
    return EdgeSchema(query=Query, extensions=extensions)
