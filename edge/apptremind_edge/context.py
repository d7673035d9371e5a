"""What every resolver can reach: the HTTP request, the service channels, the caller, the rate limits.

The edge verifies the end user's access token itself (against the auth-service's JWKS) so bad tokens are
refused before any service is called, then forwards the same token: each service verifies it again and
decides what the caller may do (docs/adr/0006-trust-boundary.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import betterproto2
import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from apptremind_platform.access_tokens import TokenVerifier
from apptremind_platform.grpc_bridge import AsyncServiceClient, outgoing_metadata, outgoing_timeout
from apptremind_platform.identity import ANONYMOUS, REQUEST_ID, Caller, bearer_token

from .errors import UNAUTHENTICATED, edge_error, graphql_error_from_rpc
from .rate_limit import RateLimits
from .upstreams import Upstreams

SERVICES = {
    "auth": "apptremind.auth.v1.AuthService",
    "business": "apptremind.business.v1.BusinessService",
    "booking": "apptremind.booking.v1.BookingService",
    "billing": "apptremind.billing.v1.BillingService",
}

R = TypeVar("R", bound=betterproto2.Message)
T = TypeVar("T")


@dataclass(slots=True)
class EdgeContext:
    request: Request | WebSocket
    response: Response | WebSocket | None
    upstreams: Upstreams
    verifier: TokenVerifier
    limits: RateLimits
    _caller: Caller | None = field(default=None)

    @property
    def request_id(self) -> str:
        """The id `RequestObservability` gave this request, to forward to services in gRPC metadata."""
        return str(getattr(self.request.state, "request_id", ""))

    @property
    def client_ip(self) -> str:
        client = self.request.client
        return client.host if client is not None else "unknown"

    async def caller(self) -> Caller:
        """The verified caller (once per request); anonymous without a valid bearer token."""
        if self._caller is None:
            token = bearer_token([(k.lower(), v) for k, v in self.request.headers.items()])
            self._caller = await self.verifier.caller(token) if token else ANONYMOUS
        return self._caller

    async def require_caller(self) -> Caller:
        caller = await self.caller()
        if caller.anonymous:
            raise edge_error(
                "a valid access token is required",
                UNAUTHENTICATED,
                reason=caller.auth_error or "unauthenticated",
            )
        return caller

    async def call(
        self, service: str, method: str, request: betterproto2.Message, response_type: type[R]
    ) -> R:
        """One gRPC call with the request id and the caller's token; failures become coded GraphQL errors."""
        metadata = [(REQUEST_ID, self.request_id), *(await self.caller()).to_metadata()]
        client = AsyncServiceClient(self.upstreams.channel(service), SERVICES[service])
        try:
            return await client.call(
                method, request, response_type, metadata=metadata, timeout=self.upstreams.call_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            raise graphql_error_from_rpc(err) from err

    async def call_decoded(
        self, service: str, method: str, request: betterproto2.Message, decode: Callable[[bytes], T]
    ) -> T:
        """`call`, with the response's bytes handed to `decode` instead of betterproto2 (see wire.py)."""
        metadata = [(REQUEST_ID, self.request_id), *(await self.caller()).to_metadata()]
        rpc = self.upstreams.channel(service).unary_unary(
            f"/{SERVICES[service]}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=decode,
        )
        try:
            response: T = await rpc(
                request,
                metadata=outgoing_metadata(metadata),
                timeout=outgoing_timeout(self.upstreams.call_timeout_s),
            )
        except grpc.aio.AioRpcError as err:
            raise graphql_error_from_rpc(err) from err
        return response
