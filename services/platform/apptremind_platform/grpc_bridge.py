"""The one bridge between betterproto2 messages and grpcio asyncio servers and clients.

betterproto2 emits typed messages and sync grpcio stubs, but its async server and client code targets
grpclib. Rather than hand-writing a servicer base per service, this module reads each service's descriptor
from the generated descriptor pool and builds grpcio method handlers (and a generic async client) from it.
A servicer is any object with an `async def` per RPC, named in snake_case (`GetJwks` -> `get_jwks`), taking
`(request, context)`; RPCs it does not define stay unregistered, so gRPC answers UNIMPLEMENTED for them.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import betterproto2
import grpc
import grpc.aio
from betterproto2.casing import snake_case
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from apptremind_gen.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from apptremind_gen.message_pool import default_message_pool

from . import deadline, identity
from .interceptors import current_request_id

M = TypeVar("M", bound=betterproto2.Message)
Metadata = Sequence[tuple[str, str | bytes]]

_GEN_PACKAGE = "apptremind_gen"
_TYPE_URL_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC of a service as the generated code describes it."""

    name: str
    path: str
    request_type: type[betterproto2.Message]
    response_type: type[betterproto2.Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def attribute(self) -> str:
        """The servicer attribute that implements this RPC."""
        return snake_case(self.name)


@functools.cache
def service_methods(service_full_name: str) -> dict[str, MethodSpec]:
    """The RPCs of `service_full_name` ("apptremind.scheduler.v1.SchedulerService"), keyed by RPC name."""
    package, _, _ = service_full_name.rpartition(".")
    if not package:
        raise ValueError(f"{service_full_name!r} is not a fully-qualified service name")
    # Importing the generated module is what registers its descriptors and message classes in the pools.
    importlib.import_module(f"{_GEN_PACKAGE}.{package}")
    try:
        service = default_google_proto_descriptor_pool.FindServiceByName(service_full_name)
    except KeyError:
        raise LookupError(f"no service {service_full_name!r} in the generated descriptors") from None
    return {
        method.name: MethodSpec(
            name=method.name,
            path=f"/{service_full_name}/{method.name}",
            request_type=_message_class(method.input_type.full_name),
            response_type=_message_class(method.output_type.full_name),
            client_streaming=bool(method.client_streaming),
            server_streaming=bool(method.server_streaming),
        )
        for method in service.methods
    }


def _message_class(full_name: str) -> type[betterproto2.Message]:
    cls: type[betterproto2.Message] = default_message_pool.url_to_type[_TYPE_URL_PREFIX + full_name]
    return cls


def bind_service(servicer: object, service_full_name: str) -> grpc.GenericRpcHandler:
    """A grpcio handler serving the RPCs of `service_full_name` that `servicer` implements."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for spec in service_methods(service_full_name).values():
        impl = getattr(servicer, spec.attribute, None)
        if impl is None:
            continue
        handlers[spec.name] = _method_handler(spec, impl, type(servicer).__name__)
    # An empty servicer is allowed: a service publishes its contract (and reflection lists it) before its
    # RPCs exist, and every call answers UNIMPLEMENTED until they do.
    return grpc.method_handlers_generic_handler(service_full_name, handlers)


def _method_handler(spec: MethodSpec, impl: Callable[..., Any], owner: str) -> grpc.RpcMethodHandler:
    where = f"{owner}.{spec.attribute}"
    if spec.server_streaming:
        if not inspect.isasyncgenfunction(impl):
            raise TypeError(f"{where} serves a server-streaming RPC and must be an async generator")
    elif not inspect.iscoroutinefunction(impl):
        raise TypeError(f"{where} must be an async def")
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(spec.client_streaming, spec.server_streaming)]
    return factory(
        impl,
        request_deserializer=spec.request_type.FromString,
        response_serializer=spec.response_type.SerializeToString,
    )


def open_channel(target: str, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An insecure asyncio channel that carries the current trace context to the server."""
    return grpc.aio.insecure_channel(target, options=list(options), interceptors=aio_client_interceptors())  # type: ignore[no-untyped-call]


def outgoing_metadata(metadata: Metadata | None = None) -> list[tuple[str, str | bytes]]:
    """`metadata` plus the current request id and caller identity, unless `metadata` already sets them."""
    pairs = list(metadata or ())
    present = {key for key, _ in pairs}
    request_id = current_request_id.get()
    if request_id and identity.REQUEST_ID not in present:
        pairs.append((identity.REQUEST_ID, request_id))
    pairs.extend((k, v) for k, v in identity.current_caller.get().to_metadata() if k not in present)
    return pairs


def outgoing_timeout(timeout: float | None) -> float | None:
    """`timeout`, cut short by the deadline of the call being handled (if any)."""
    return deadline.remaining() if timeout is None else deadline.timeout_or(timeout)


class AsyncServiceClient:
    """A typed asyncio client for any generated service.

    `await client.call("Get", GetRequest(...))` sends the request and returns the decoded response. Calls made
    while handling a request inherit its request id, caller identity and remaining deadline.

    `max_inflight` caps the unary calls this client has in flight at once: more wait their turn, and a call's
    own timeout starts only when it is sent, so a burst (a batch of reminders) queues here instead of racing
    its deadlines at a slow server.
    """

    def __init__(
        self, channel: grpc.aio.Channel, service_full_name: str, max_inflight: int | None = None
    ) -> None:
        self._channel = channel
        self.service = service_full_name
        self._methods = service_methods(service_full_name)
        self._callables: dict[str, Any] = {}
        self._slots = asyncio.Semaphore(max_inflight) if max_inflight else None

    def _spec(self, method: str, request: betterproto2.Message, streaming: bool) -> MethodSpec:
        spec = self._methods.get(method)
        if spec is None:
            raise LookupError(f"{self.service} has no RPC {method!r}")
        if spec.client_streaming or spec.server_streaming != streaming:
            kind = "stream()" if spec.server_streaming else "call()"
            raise TypeError(f"{self.service}/{method} must be invoked with {kind}")
        if not isinstance(request, spec.request_type):
            raise TypeError(f"{self.service}/{method} takes {spec.request_type.__name__}")
        return spec

    def _callable(self, spec: MethodSpec) -> Any:
        multi = self._callables.get(spec.name)
        if multi is None:
            factory = self._channel.unary_stream if spec.server_streaming else self._channel.unary_unary
            multi = factory(
                spec.path,
                request_serializer=spec.request_type.SerializeToString,
                response_deserializer=spec.response_type.FromString,
            )
            self._callables[spec.name] = multi
        return multi

    @overload
    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the call's deadline
    ) -> betterproto2.Message: ...

    @overload
    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[M],
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the call's deadline
    ) -> M: ...

    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[betterproto2.Message] | None = None,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the call's deadline
    ) -> betterproto2.Message:
        """Invoke the unary RPC `method`; pass `response_type` to have the result typed precisely."""
        spec = self._spec(method, request, streaming=False)
        if response_type is not None and not issubclass(spec.response_type, response_type):
            raise TypeError(f"{self.service}/{method} returns {spec.response_type.__name__}")
        if self._slots is None:
            return await self._send(spec, request, metadata, timeout)
        async with self._slots:
            return await self._send(spec, request, metadata, timeout)

    async def _send(
        self,
        spec: MethodSpec,
        request: betterproto2.Message,
        metadata: Metadata | None,
        timeout: float | None,  # noqa: ASYNC109 - sent to the server as the call's deadline
    ) -> betterproto2.Message:
        response: betterproto2.Message = await self._callable(spec)(
            request, metadata=outgoing_metadata(metadata), timeout=outgoing_timeout(timeout)
        )
        return response

    async def stream(
        self,
        method: str,
        request: betterproto2.Message,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the call's deadline
    ) -> AsyncIterator[betterproto2.Message]:
        """Invoke the server-streaming RPC `method` and yield its responses."""
        spec = self._spec(method, request, streaming=True)
        call = self._callable(spec)(
            request, metadata=outgoing_metadata(metadata), timeout=outgoing_timeout(timeout)
        )
        async for response in call:
            yield response
