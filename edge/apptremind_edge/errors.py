"""GraphQL errors of the edge: every error a client sees carries `extensions.code`.

Services answer with gRPC status codes plus a machine-readable reason in the `x-error-reason` trailer
(see `apptremind_platform.interceptors`). `code_for_status` is the one place that turns a status code into
the GraphQL code clients switch on; `graphql_error_from_rpc` builds the client-facing error from a failed
call, and the `ErrorCodes` schema extension applies it to whatever a resolver let escape, so resolvers can
simply call their stubs and let gRPC errors propagate.

Only the messages of statuses that describe the caller's own request (bad input, not found, forbidden, ...)
reach the client: the platform sends nothing but deliberate domain messages with those. Messages of
UNAVAILABLE, INTERNAL and the rest can name hosts, ports or internals, so they are replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from apptremind_platform.interceptors import ERROR_REASON_KEY
from apptremind_platform.logs import get_logger

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
FORBIDDEN = "FORBIDDEN"
UNAUTHENTICATED = "UNAUTHENTICATED"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"

INTERNAL_MESSAGE = "internal error"
UNAVAILABLE_MESSAGE = "a backing service is unavailable, try again shortly"
# Same code (the client's remedy is the same: retry), but operators reading logs and clients reading the
# message can tell an overloaded service from an unreachable one.
TIMEOUT_MESSAGE = "a backing service did not answer in time, try again shortly"

_STATUS_TO_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: BAD_USER_INPUT,
    grpc.StatusCode.OUT_OF_RANGE: BAD_USER_INPUT,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: CONFLICT,
    # ABORTED is a lost concurrency race (e.g. a slot taken meanwhile): to the client, a conflict.
    grpc.StatusCode.ABORTED: CONFLICT,
    grpc.StatusCode.FAILED_PRECONDITION: FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED: FORBIDDEN,
    grpc.StatusCode.UNAUTHENTICATED: UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
    # A deadline the edge set ran out: the same advice to the client as an unreachable service (retry).
    grpc.StatusCode.DEADLINE_EXCEEDED: UNAVAILABLE,
}

# Codes whose message the service meant for the caller.
_PUBLIC_MESSAGE_CODES = frozenset(
    {BAD_USER_INPUT, NOT_FOUND, CONFLICT, FAILED_PRECONDITION, FORBIDDEN, UNAUTHENTICATED, RESOURCE_EXHAUSTED}
)

_log = get_logger("apptremind.edge.errors")


def code_for_status(status: grpc.StatusCode) -> str:
    """The GraphQL `extensions.code` for a gRPC status; anything unexpected is INTERNAL."""
    return _STATUS_TO_CODE.get(status, INTERNAL)


def edge_error(message: str, code: str, *, reason: str = "") -> GraphQLError:
    """A client-facing error; `reason` is the machine-readable detail below the code, when there is one."""
    extensions: dict[str, Any] = {"code": code}
    if reason:
        extensions["reason"] = reason
    return GraphQLError(message, extensions=extensions)


def error_reason(err: grpc.RpcError) -> str:
    """The service's `x-error-reason` trailer, or "" when the call ended without one."""
    trailing = getattr(err, "trailing_metadata", None)
    metadata: Iterable[tuple[str, str | bytes]] = (trailing() if callable(trailing) else None) or ()
    for key, value in metadata:
        if key == ERROR_REASON_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def graphql_error_from_rpc(err: grpc.RpcError) -> GraphQLError:
    """The error a client sees for a failed gRPC call: mapped code, the reason trailer, a safe message."""
    code = code_for_status(err.code())
    if code in _PUBLIC_MESSAGE_CODES:
        message = err.details() or code.lower().replace("_", " ")
    elif err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = TIMEOUT_MESSAGE
    elif code == UNAVAILABLE:
        message = UNAVAILABLE_MESSAGE
    else:
        message = INTERNAL_MESSAGE
    return edge_error(message, code, reason=error_reason(err))


def with_code(error: GraphQLError) -> GraphQLError:
    """`error` as the client should see it: unchanged when it already has a code, else classified."""
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if isinstance(original, grpc.RpcError):
        mapped = graphql_error_from_rpc(original)
        return _relocated(error, mapped.message, mapped.extensions or {})
    if isinstance(error, GraphQLSyntaxError):
        return _relocated(error, error.message, {"code": GRAPHQL_PARSE_FAILED})
    if original is None and error.path is None:
        # Raised before execution: document validation (depth limit included) or variable coercion.
        return _relocated(error, error.message, {"code": GRAPHQL_VALIDATION_FAILED})
    if isinstance(original, GraphQLError):
        # Raised on purpose by edge code that forgot a code: the message was written for the client.
        return _relocated(error, error.message, {"code": INTERNAL})
    # A bug (an exception, or a null where the schema promised a value): its text is not for clients.
    return _relocated(error, INTERNAL_MESSAGE, {"code": INTERNAL})


def _relocated(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    # original_error is dropped on purpose: what reaches the client is decided here, and process_errors
    # has already logged the original.
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def log_errors(errors: Iterable[GraphQLError]) -> None:
    """Log what went wrong at a level that matches whose fault it was."""
    for error in errors:
        original = error.original_error
        if isinstance(original, grpc.RpcError):
            code = code_for_status(original.code())
            level = "info" if code in _PUBLIC_MESSAGE_CODES else "warning"
            getattr(_log, level)(
                "graphql.upstream_error",
                path=error.path,
                grpc_code=original.code().name,
                code=code,
                reason=error_reason(original),
            )
        elif original is None or isinstance(original, GraphQLError):
            _log.info("graphql.request_error", path=error.path, message=error.message)
        else:
            _log.error("graphql.resolver_failed", path=error.path, exc_info=original)


class ErrorCodes(SchemaExtension):
    """Gives every error of an operation its `extensions.code` once the operation has run.

    It also sees errors raised before execution (parse, validation, depth limit), which is why this is a
    schema extension and not resolver code.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [with_code(error) for error in errors]
