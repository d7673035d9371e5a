"""The edge process: a Starlette app serving GraphQL at `/graphql`, plus `/healthz`, `/readyz`, `/metrics`.

`/healthz` answers 200 while the event loop runs; `/readyz` answers 200 only when every configured service
reports SERVING to its gRPC health check (503 with each service's status otherwise), so a load balancer
stops sending traffic to an edge that could not serve it. Every request gets a request id (a well-formed
`X-Request-ID` from the client, else a new one) bound into the log context and echoed in the response, and
bodies above the configured size are refused with 413 before any GraphQL work is done.

Run with `apptremind-edge` or `python -m apptremind_edge.app`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from apptremind_gen.apptremind.auth.v1 import GetJwksRequest, GetJwksResponse
from apptremind_platform.access_tokens import TokenVerifier
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.identity import REQUEST_ID
from apptremind_platform.logs import configure_logging, get_logger

from .context import EdgeContext
from .errors import REQUEST_TOO_LARGE
from .micro_cache import AvailabilityMicroCache
from .rate_limit import RateLimits
from .schema import build_schema
from .settings import EdgeSettings
from .upstreams import HealthStatus, Upstreams
from .webhooks import webhook_routes

GRAPHQL_PATH = "/graphql"
_INFRA_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_KNOWN_PATHS = _INFRA_PATHS | {GRAPHQL_PATH}

# A client-supplied id lands in every log line and in gRPC metadata; anything that is not a plain token
# is replaced rather than trusted.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

HTTP_REQUESTS = Counter(
    "edge_http_requests_total", "HTTP requests answered by the edge", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "edge_http_request_seconds", "Time the edge took to answer an HTTP request", ["route"]
)

_log = get_logger("apptremind.edge.http")


class RequestObservability:
    """Request id, one access log line and the HTTP metrics for every request.

    Pure ASGI rather than BaseHTTPMiddleware, so the request body and the response are passed through
    untouched. The route label is the path only for the edge's own routes; anything else is "other", so a
    client probing random URLs cannot blow up the metric's cardinality.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID.encode()), "")
        request_id = supplied if _REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        route = path if path in _KNOWN_PATHS else "other"
        status = 500  # What the client gets if the app dies before starting a response.

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID] = request_id
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
                HTTP_SECONDS.labels(route).observe(elapsed)
                # Probes arrive every few seconds; at info they would drown the access log.
                log = _log.debug if path in _INFRA_PATHS else _log.info
                log(
                    "http.request",
                    method=scope["method"],
                    path=path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


class BodySizeLimit:
    """Refuses request bodies larger than `max_bytes` with 413 and a GraphQL-shaped error.

    A declared Content-Length over the limit is refused before reading anything. Otherwise the body is
    read here, counting as it streams in (chunked bodies have no Content-Length, and a declared length
    proves nothing), and handed to the app whole; at this size buffering costs nothing, and the app never
    starts on a body that is then cut off.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # The client left; nobody is waiting for an answer.
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, only a disconnect can come; the app may wait for it.
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "errors": [
                    {
                        "message": f"request body exceeds the limit of {self.max_bytes} bytes",
                        "extensions": {"code": REQUEST_TOO_LARGE},
                    }
                ]
            },
            status_code=413,
            # The rest of the body is never read, so the connection cannot carry another request.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    values = [v for k, v in scope["headers"] if k == b"content-length"]
    if len(values) != 1 or not values[0].isdigit():
        return None  # Absent or malformed: the streamed count decides.
    return int(values[0])


class EdgeGraphQL(GraphQL[EdgeContext, None]):
    """Strawberry's ASGI view, giving resolvers the shared `Upstreams`."""

    def __init__(
        self,
        upstreams: Upstreams,
        verifier: TokenVerifier,
        limits: RateLimits,
        settings: EdgeSettings,
    ) -> None:
        super().__init__(
            build_schema(settings.edge_max_query_depth, settings.edge_max_query_complexity),
            graphql_ide="graphiql" if settings.edge_graphiql else None,
            # The schema has no subscriptions; not speaking the websocket protocols keeps that door shut.
            subscription_protocols=(),
        )
        self._upstreams = upstreams
        self._verifier = verifier
        self._limits = limits

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> EdgeContext:
        return EdgeContext(
            request=request,
            response=response,
            upstreams=self._upstreams,
            verifier=self._verifier,
            limits=self._limits,
        )


def create_app(settings: EdgeSettings | None = None, limits: RateLimits | None = None) -> Starlette:
    settings = settings or EdgeSettings()
    upstreams = Upstreams(
        settings.service_targets,
        call_timeout_s=settings.edge_call_timeout_s,
        health_timeout_s=settings.edge_health_timeout_s,
    )
    limits = limits or RateLimits.per_minute(
        settings.edge_login_per_ip_per_minute,
        settings.edge_login_per_account_per_minute,
        settings.edge_signup_per_ip_per_minute,
        settings.edge_public_per_ip_per_minute,
        settings.edge_bookings_per_business_per_minute,
    )

    async def jwks() -> str:
        # The auth-service's signing keys, over the same shared channel every auth call uses.
        client = AsyncServiceClient(upstreams.channel("auth"), "apptremind.auth.v1.AuthService")
        response = await client.call("GetJwks", GetJwksRequest(), GetJwksResponse, timeout=3.0)
        return str(response.jwks_json)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"alive": True})

    async def readyz(_: Request) -> Response:
        checks = await upstreams.health_all()
        ready = all(status is HealthStatus.SERVING for status in checks.values())
        body = {"ready": ready, "checks": {name: status.value for name, status in checks.items()}}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        _log.info("edge.started", services=upstreams.names)
        try:
            yield
        finally:
            await upstreams.close()

    graphql = AvailabilityMicroCache(
        EdgeGraphQL(upstreams, TokenVerifier(jwks), limits, settings),
        settings.edge_availability_cache_ttl_s,
        limits.public_per_ip,
    )
    app = Starlette(
        routes=[
            Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *webhook_routes(settings, upstreams),
        ],
        # Listed outermost first: requests refused for size are still counted and logged.
        middleware=[
            Middleware(RequestObservability),
            Middleware(BodySizeLimit, max_bytes=settings.edge_max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.upstreams = upstreams
    app.state.availability_cache = graphql
    return app


def main() -> None:
    settings = EdgeSettings()
    configure_logging("edge", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.edge_host,
        port=settings.edge_port,
        # Keep the structlog configuration above instead of uvicorn's own; RequestObservability logs
        # every request, so uvicorn's access log would only repeat it.
        log_config=None,
        access_log=False,
        server_header=False,
        # httptools parses HTTP in C: ~0.2 ms less CPU per request than h11 (docs/benchmarks.md). uvloop
        # measured no better than asyncio with grpc.aio's channels, so the standard loop, as the services.
        http="httptools",
        loop="asyncio",
    )


if __name__ == "__main__":
    main()
