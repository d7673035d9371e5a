"""The GraphQL schema the edge serves.

Resolvers hold no business state: each one asks services over gRPC (through `EdgeContext.upstreams`)
and shapes the answer. The exported SDL lives in `edge/schema.graphql` (see `export_schema`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError, parse
from strawberry.extensions import AddValidationRules, SchemaExtension, ValidationCache
from strawberry.extensions.query_depth_limiter import create_validator
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from .billing_schema import BillingMutation, BillingQuery
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


Query = merge_types("Query", (HealthQuery, IdentityQuery, CatalogQuery, BookingQuery, BillingQuery))
Mutation = merge_types("Mutation", (IdentityMutation, CatalogMutation, BookingMutation, BillingMutation))


# Distinct operation texts whose parsed document and validation result are kept. Clients send a handful of
# fixed operations; a bound keeps a stream of one-off texts from growing memory (they just miss).
OPERATION_CACHE_SIZE = 256


@functools.lru_cache(maxsize=OPERATION_CACHE_SIZE)
def _parsed(query: str) -> DocumentNode:
    return parse(query)


class ParsedOperationCache(SchemaExtension):
    """Reuses the parsed document of an operation text seen before (graphql-core never mutates it).

    Unlike strawberry's ParserCache, a syntax error is left to strawberry's own parse, which turns it into
    the operation's error result (with its `extensions.code`); raised from this hook it would escape as an
    uncoded error. Errors are not cached, so a bad text costs what it always did.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query and not context.parse_options:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = _parsed(context.query)
        yield


def build_schema(max_query_depth: int = 10, max_query_complexity: int = 2000) -> strawberry.Schema:
    # The rule classes are built once: ValidationCache keys on (schema, document, rules), so a class made per
    # request (as QueryDepthLimiter does) would never hit. Validation depends on nothing else (variables are
    # coerced at execution), so a cached verdict is the verdict; parsing and validating the same few
    # operations was most of the edge's CPU per request.
    rules: list[type[ASTValidationRule]] = [
        create_validator(max_query_depth, None),
        max_complexity_rule(max_query_complexity),
    ]
    extensions: list[Any] = [
        # Factories, not instances: strawberry gives each operation its own extension objects.
        ParsedOperationCache,
        functools.partial(AddValidationRules, rules),
        functools.partial(ValidationCache, maxsize=OPERATION_CACHE_SIZE),
        ErrorCodes,
    ]
    return EdgeSchema(query=Query, mutation=Mutation, extensions=extensions)
