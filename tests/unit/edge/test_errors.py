"""gRPC failures become GraphQL errors with `extensions.code` and `extensions.reason`.

The upstream is a real grpc.aio server behind the platform's own `CallInterceptor`, so the test holds the
edge to the contract services actually speak (status code + `x-error-reason` trailer), not to a copy of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
import strawberry

from apptremind_edge.errors import (
    BAD_USER_INPUT,
    CONFLICT,
    FAILED_PRECONDITION,
    FORBIDDEN,
    INTERNAL,
    INTERNAL_MESSAGE,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    TIMEOUT_MESSAGE,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNAVAILABLE_MESSAGE,
    ErrorCodes,
    code_for_status,
    graphql_error_from_rpc,
)
from apptremind_platform import errors as domain
from apptremind_platform.interceptors import CallInterceptor

from .conftest import unary_server

SECRET = "db password is hunter2"

FAILURES: dict[str, Exception] = {
    "invalid": domain.InvalidArgument("starts_at_in_past", "the appointment starts in the past"),
    "missing": domain.NotFound("appointment_not_found", "no such appointment"),
    "exists": domain.AlreadyExists("email_taken", "that email is already registered"),
    "precondition": domain.FailedPrecondition("slot_unavailable", "the slot is no longer free"),
    "denied": domain.PermissionDenied("not_a_member", "you are not staff of this business"),
    "unauthenticated": domain.Unauthenticated("token_expired", "sign in again"),
    "exhausted": domain.ResourceExhausted("sms_quota", "monthly SMS quota used up"),
    "bug": RuntimeError(SECRET),
}


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise FAILURES[request.decode()]


@pytest.fixture
async def failing_call() -> AsyncIterator[Callable[[str], Awaitable[bytes]]]:
    """Calls a method that raises FAILURES[name] inside a server running the platform interceptor."""
    async with unary_server("test.Fail", "Call", _fail, [CallInterceptor()]) as target:
        channel = grpc.aio.insecure_channel(target)
        method = channel.unary_unary("/test.Fail/Call")

        async def call(name: str) -> bytes:
            result: bytes = await method(name.encode(), timeout=5)
            return result

        yield call
        await channel.close()


async def _rpc_error(call: Callable[[str], Awaitable[bytes]], name: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(name)
    return caught.value


@pytest.mark.parametrize(
    ("name", "code", "reason", "message"),
    [
        ("invalid", BAD_USER_INPUT, "starts_at_in_past", "the appointment starts in the past"),
        ("missing", NOT_FOUND, "appointment_not_found", "no such appointment"),
        ("exists", CONFLICT, "email_taken", "that email is already registered"),
        ("precondition", FAILED_PRECONDITION, "slot_unavailable", "the slot is no longer free"),
        ("denied", FORBIDDEN, "not_a_member", "you are not staff of this business"),
        ("unauthenticated", UNAUTHENTICATED, "token_expired", "sign in again"),
        ("exhausted", RESOURCE_EXHAUSTED, "sms_quota", "monthly SMS quota used up"),
    ],
)
async def test_domain_errors_keep_message_code_and_reason(
    failing_call: Callable[[str], Awaitable[bytes]], name: str, code: str, reason: str, message: str
) -> None:
    error = graphql_error_from_rpc(await _rpc_error(failing_call, name))

    assert error.formatted == {"message": message, "extensions": {"code": code, "reason": reason}}


async def test_internal_errors_are_masked(failing_call: Callable[[str], Awaitable[bytes]]) -> None:
    error = graphql_error_from_rpc(await _rpc_error(failing_call, "bug"))

    assert error.formatted == {
        "message": INTERNAL_MESSAGE,
        "extensions": {"code": INTERNAL, "reason": "internal"},
    }
    assert SECRET not in str(error.formatted)


async def test_an_unreachable_service_is_unavailable_without_its_address(dead_target: str) -> None:
    async with grpc.aio.insecure_channel(dead_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/test.Fail/Call")(b"", timeout=5)

    error = graphql_error_from_rpc(caught.value)

    assert error.formatted == {"message": UNAVAILABLE_MESSAGE, "extensions": {"code": UNAVAILABLE}}
    assert dead_target.rsplit(":", 1)[1] not in error.message


async def test_a_service_too_slow_for_the_deadline_is_reported_as_a_timeout() -> None:
    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(5)
        return b""

    async with (
        unary_server("test.Slow", "Call", slow) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/test.Slow/Call")(b"", timeout=0.2)

    error = graphql_error_from_rpc(caught.value)

    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.formatted == {"message": TIMEOUT_MESSAGE, "extensions": {"code": UNAVAILABLE}}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, BAD_USER_INPUT),
        (grpc.StatusCode.NOT_FOUND, NOT_FOUND),
        (grpc.StatusCode.PERMISSION_DENIED, FORBIDDEN),
        (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED),
        (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, INTERNAL),
        (grpc.StatusCode.UNKNOWN, INTERNAL),
        (grpc.StatusCode.UNIMPLEMENTED, INTERNAL),
    ],
)
def test_status_codes_map_to_graphql_codes(status: grpc.StatusCode, code: str) -> None:
    assert code_for_status(status) == code


async def test_errors_escaping_resolvers_are_coded_by_the_schema_hook(
    failing_call: Callable[[str], Awaitable[bytes]],
) -> None:
    """What a later resolver gets for free: let the gRPC error propagate, the extension shapes it."""

    @strawberry.type
    class Query:
        @strawberry.field
        async def appointment(self, name: str) -> str:
            return (await failing_call(name)).decode()

        @strawberry.field
        def broken(self) -> str:
            raise ValueError(SECRET)

    schema = strawberry.Schema(query=Query, extensions=[ErrorCodes])

    result = await schema.execute('{ appointment(name: "missing") }')
    assert result.errors is not None
    [error] = result.errors
    assert error.formatted == {
        "message": "no such appointment",
        "locations": [{"line": 1, "column": 3}],
        "path": ["appointment"],
        "extensions": {"code": NOT_FOUND, "reason": "appointment_not_found"},
    }

    result = await schema.execute("{ broken }")
    assert result.errors is not None
    formatted: dict[str, Any] = dict(result.errors[0].formatted)
    assert formatted["message"] == INTERNAL_MESSAGE
    assert formatted["extensions"] == {"code": INTERNAL}
    assert SECRET not in str(formatted)
