"""Server-side call handling every gRPC method gets, in one place.

For each call: a request id (taken from `x-request-id` or generated, bound into the log context and echoed
in the trailing metadata), the caller's identity (`identity.current_caller`), the call's deadline
(`deadline`), one access log line, Prometheus metrics, and the mapping of exceptions to statuses: a
`DomainError` becomes its code and message with a google.rpc.ErrorInfo detail and an `x-error-reason`
trailer; anything else becomes INTERNAL with reason "internal" and no message, because exception text can
carry data the caller must not see.

grpc.aio interceptors cannot see the call itself, only the method handler that will serve it, so the
interceptor returns a copy of that handler whose behaviour runs inside a `_CallScope`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from prometheus_client import Counter, Histogram

from . import deadline
from .access_tokens import TokenVerifier
from .errors import DomainError
from .identity import ANONYMOUS, REQUEST_ID, bearer_token, current_caller
from .logs import get_logger

ERROR_DOMAIN = "apptremind"
ERROR_REASON_KEY = "x-error-reason"
INTERNAL_REASON = "internal"
INTERNAL_MESSAGE = "internal error"

# Infrastructure services polled by load balancers and tools: kept out of traces and logged at debug level
# so probes do not drown the access log.
INFRA_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

# A client-supplied id ends up in every log line; anything that is not a plain token is replaced.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("current_request_id", default="")

HANDLED = Counter(
    "grpc_server_handled_total",
    "gRPC calls completed by the server, by status code.",
    ["service", "method", "code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time the server spent handling a gRPC call.",
    ["service", "method"],
)

_log = get_logger("apptremind.grpc")

Behavior = Callable[[Any, Any], Any]


def server_interceptors(verifier: TokenVerifier | None = None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor chain of every server: tracing outermost, so logs and errors land inside the span."""
    not_infra = filters.negate(filters.any_of(*(filters.service_name(name) for name in INFRA_SERVICES)))
    return [aio_server_interceptor(filter_=not_infra), CallInterceptor(verifier)]  # type: ignore[no-untyped-call]


def split_method(full_method: str) -> tuple[str, str]:
    """("pkg.Service", "Method") from "/pkg.Service/Method"."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method


def error_trailers(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str]
) -> list[Any]:
    """Trailing metadata carrying a google.rpc.Status with an ErrorInfo detail, plus `x-error-reason`."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata))
    rich = status_pb2.Status(code=code.value[0], message=message)
    rich.details.add().Pack(info)
    return [*rpc_status.to_status(rich).trailing_metadata, (ERROR_REASON_KEY, reason)]


class _CallScope:
    """Everything around one call: context in, status mapping, log line and metrics out."""

    def __init__(
        self, service: str, method: str, context: grpc.aio.ServicerContext, verifier: TokenVerifier | None
    ) -> None:
        self._verifier = verifier
        self._service = service
        self._method = method
        self._context = context
        self._code = grpc.StatusCode.OK
        self._started = 0.0
        self._request_id = ""
        self._tokens: list[Callable[[], None]] = []

    async def __aenter__(self) -> None:
        metadata = tuple(self._context.invocation_metadata() or ())
        supplied = next((v for k, v in metadata if k == REQUEST_ID and isinstance(v, str)), "")
        self._request_id = supplied if _REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
        token = bearer_token(metadata)
        caller = ANONYMOUS
        if token and self._verifier is not None:
            caller = await self._verifier.caller(token)
        fields = {"request_id": self._request_id, "rpc": f"{self._service}/{self._method}"}
        if caller.user_id:
            fields["user_id"] = caller.user_id
        if caller.service:
            fields["caller_service"] = caller.service

        log_tokens = structlog.contextvars.bind_contextvars(**fields)
        request_token = current_request_id.set(self._request_id)
        caller_token = current_caller.set(caller)
        deadline_token = deadline.set_timeout(self._context.time_remaining())
        self._tokens = [
            lambda: structlog.contextvars.reset_contextvars(**log_tokens),
            lambda: current_request_id.reset(request_token),
            lambda: current_caller.reset(caller_token),
            lambda: deadline.reset(deadline_token),
        ]
        self._started = time.perf_counter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        abort: tuple[grpc.StatusCode, str, str, Mapping[str, str]] | None = None
        try:
            if exc is None:
                self._code = self._current_code(grpc.StatusCode.OK)
                self._context.set_trailing_metadata(
                    (*(self._context.trailing_metadata() or ()), (REQUEST_ID, self._request_id))
                )
            elif isinstance(exc, grpc.aio.AbortError):
                # The handler aborted by itself; the status is already on its way.
                self._code = self._current_code(grpc.StatusCode.UNKNOWN)
            elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
                self._code = grpc.StatusCode.CANCELLED
            elif isinstance(exc, DomainError):
                self._code = exc.code
                abort = (exc.code, exc.message, exc.reason, exc.metadata)
            elif isinstance(exc, Exception):
                self._code = grpc.StatusCode.INTERNAL
                _log.error("unhandled_exception", exc_info=exc)
                abort = (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, INTERNAL_REASON, {})
        finally:
            # Recorded before aborting: the caller may already hold the status by the time abort() returns,
            # and its next look at the metrics or logs must include this call.
            self._finish(exc)
        if abort is not None:
            await self._abort(*abort)

    def _current_code(self, default: grpc.StatusCode) -> grpc.StatusCode:
        code = self._context.code()
        return code if isinstance(code, grpc.StatusCode) else default

    async def _abort(
        self, code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str]
    ) -> None:
        trailers = [*error_trailers(code, message, reason, metadata), (REQUEST_ID, self._request_id)]
        await self._context.abort(code, message, trailing_metadata=tuple(trailers))

    def _finish(self, exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._started
        HANDLED.labels(self._service, self._method, self._code.name).inc()
        HANDLING_SECONDS.labels(self._service, self._method).observe(elapsed)
        fields: dict[str, Any] = {
            "grpc_service": self._service,
            "method": self._method,
            "code": self._code.name,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if isinstance(exc, DomainError):
            fields["reason"] = exc.reason
        if self._service in INFRA_SERVICES:
            _log.debug("grpc_call", **fields)
        else:
            _log.info("grpc_call", **fields)
        for reset in reversed(self._tokens):
            reset()


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every method handler so its calls run inside a `_CallScope`."""

    def __init__(self, verifier: TokenVerifier | None = None) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, service, method, self._verifier), **options
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, service, method, self._verifier), **options
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, service, method, self._verifier), **options
            )
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, service, method, self._verifier), **options
        )


def _unary(behavior: Behavior, service: str, method: str, verifier: TokenVerifier | None) -> Behavior:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _CallScope(service, method, context, verifier):
            response = behavior(request, context)
            # grpc.aio also accepts plain functions as handlers; only await what is awaitable.
            return await response if inspect.isawaitable(response) else response

    return handle


def _streaming(behavior: Behavior, service: str, method: str, verifier: TokenVerifier | None) -> Behavior:
    async def generate(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with _CallScope(service, method, context, verifier):
            responses = behavior(request, context)
            if inspect.isawaitable(responses):
                # Handlers may answer through `await context.write(...)` (the health Watch) instead of yielding.
                await responses
            else:
                async for response in responses:
                    yield response

    return generate
