"""The GraphQL schema the edge serves.

Resolvers hold no business state: each one asks services over gRPC (through `EdgeContext.upstreams`)
and shapes the answer. The exported SDL lives in `edge/schema.graphql` (see `export_schema`).
"""

from __future__ import annotations

import functools
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, QueryDepthLimiter
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from .booking_schema import BookingMutation, BookingQuery
from .catalog_schema import CatalogMutation, CatalogQuery
from .complexity import max_complexity_rule
from .context import EdgeContext
from .errors import ErrorCodes, log_errors
from .identity_schema import IdentityMutation, IdentityQuery


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
class HealthQuery:
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


Query = merge_types("Query", (HealthQuery, IdentityQuery, CatalogQuery, BookingQuery))
Mutation = merge_types("Mutation", (IdentityMutation, CatalogMutation, BookingMutation))


def build_schema(max_query_depth: int = 10, max_query_complexity: int = 2000) -> strawberry.Schema:
    extensions: list[Any] = [
        # Factories, not instances: strawberry gives each operation its own extension objects.
        functools.partial(QueryDepthLimiter, max_depth=max_query_depth),
        functools.partial(AddValidationRules, [max_complexity_rule(max_query_complexity)]),
        ErrorCodes,
    ]
    return EdgeSchema(query=Query, mutation=Mutation, extensions=extensions)
