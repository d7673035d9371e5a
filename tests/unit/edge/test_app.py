"""The edge's HTTP surface: platformHealth over real gRPC health checks, /readyz, the depth and body limits,
request ids and /metrics. Upstreams are real grpc.aio servers on 127.0.0.1; nothing is mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
from grpc_health.v1 import health_pb2

from apptremind_edge.errors import GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, REQUEST_TOO_LARGE

from .conftest import EdgeFactory, HealthServer, unary_server

HEALTH_QUERY = "{ platformHealth { service status } }"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_platform_health_reports_every_service(
    edge: EdgeFactory, health_server: HealthServer, dead_target: str
) -> None:
    async with edge(service_targets={"auth": health_server.target, "billing": dead_target}) as e:
        response = await e.client.post("/graphql", json={"query": HEALTH_QUERY})

    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "platformHealth": [
                {"service": "auth", "status": "SERVING"},
                {"service": "billing", "status": "UNREACHABLE"},
            ]
        }
    }


async def test_platform_health_sees_a_service_go_not_serving(
    edge: EdgeFactory, health_server: HealthServer
) -> None:
    async with edge(service_targets={"auth": health_server.target}) as e:
        await health_server.set(NOT_SERVING)
        response = await e.client.get("/graphql", params={"query": HEALTH_QUERY})

    assert response.json()["data"]["platformHealth"] == [{"service": "auth", "status": "NOT_SERVING"}]


async def test_channels_are_created_once_per_target_and_reused(
    edge: EdgeFactory, health_server: HealthServer
) -> None:
    async with edge(service_targets={"auth": health_server.target}) as e:
        upstreams = e.app.state.upstreams
        await e.client.post("/graphql", json={"query": HEALTH_QUERY})
        first = upstreams.channel("auth")
        await e.client.post("/graphql", json={"query": HEALTH_QUERY})
        assert upstreams.channel("auth") is first


async def test_readyz_is_503_with_statuses_when_a_service_is_unreachable(
    edge: EdgeFactory, health_server: HealthServer, dead_target: str
) -> None:
    async with edge(service_targets={"auth": health_server.target, "billing": dead_target}) as e:
        response = await e.client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"ready": False, "checks": {"auth": "SERVING", "billing": "UNREACHABLE"}}


async def test_readyz_is_200_when_every_service_serves(
    edge: EdgeFactory, health_server: HealthServer
) -> None:
    async with edge(service_targets={"auth": health_server.target, "booking": health_server.target}) as e:
        ready = await e.client.get("/readyz")
        await health_server.set(NOT_SERVING)
        not_ready = await e.client.get("/readyz")

    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"auth": "SERVING", "booking": "SERVING"}}
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"auth": "NOT_SERVING", "booking": "NOT_SERVING"}


async def test_healthz_answers_without_asking_services(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}) as e:
        response = await e.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"alive": True}


async def test_a_query_deeper_than_the_limit_is_rejected_before_any_call(
    edge: EdgeFactory, health_server: HealthServer
) -> None:
    # platformHealth sits at depth 0 and its fields at depth 1, so a limit of 0 rejects the query (one
    # error per field that is too deep, hence a single field here).
    async with edge(service_targets={"auth": health_server.target}, edge_max_query_depth=0) as e:
        response = await e.client.post("/graphql", json={"query": "{ platformHealth { status } }"})
        # Validation failed, so no resolver ran and no channel was ever opened.
        assert e.app.state.upstreams._channels == {}

    body = response.json()
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["message"] == "'anonymous' exceeds maximum operation depth of 0"
    assert error["extensions"] == {"code": GRAPHQL_VALIDATION_FAILED}


async def test_errors_carry_a_code(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}) as e:
        parse = await e.client.post("/graphql", json={"query": "{ platformHealth { "})
        unknown = await e.client.post("/graphql", json={"query": "{ noSuchField }"})

    assert parse.json()["errors"][0]["extensions"] == {"code": GRAPHQL_PARSE_FAILED}
    [error] = unknown.json()["errors"]
    assert "noSuchField" in error["message"]
    assert error["extensions"] == {"code": GRAPHQL_VALIDATION_FAILED}


async def test_a_body_over_the_declared_limit_is_413(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}, edge_max_body_bytes=1024) as e:
        padding = "x" * 1024
        response = await e.client.post("/graphql", json={"query": f"# {padding}\n{HEALTH_QUERY}"})

    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": REQUEST_TOO_LARGE}
    assert "1024 bytes" in error["message"]


async def test_a_streamed_body_over_the_limit_is_413(edge: EdgeFactory, dead_target: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: only counting the bytes as they arrive can catch this one.
        for _ in range(8):
            yield b" " * 200

    async with edge(service_targets={"auth": dead_target}, edge_max_body_bytes=1024) as e:
        response = await e.client.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == REQUEST_TOO_LARGE


async def test_a_streamed_body_within_the_limit_reaches_graphql(
    edge: EdgeFactory, health_server: HealthServer
) -> None:
    payload = b'{"query": "{ platformHealth { service status } }"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    async with edge(service_targets={"auth": health_server.target}, edge_max_body_bytes=1024) as e:
        response = await e.client.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 200
    assert response.json()["data"]["platformHealth"] == [{"service": "auth", "status": "SERVING"}]


async def test_request_ids_are_echoed_or_replaced(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}) as e:
        kept = await e.client.get("/healthz", headers={"X-Request-ID": "req-123"})
        replaced = await e.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})

    assert kept.headers["x-request-id"] == "req-123"
    assert replaced.headers["x-request-id"] not in ("", "bad id\twith spaces")
    assert len(replaced.headers["x-request-id"]) == 32


async def test_metrics_expose_requests_and_upstream_health(
    edge: EdgeFactory, health_server: HealthServer, dead_target: str
) -> None:
    async with edge(service_targets={"auth": health_server.target, "billing": dead_target}) as e:
        await e.client.post("/graphql", json={"query": HEALTH_QUERY})
        response = await e.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'edge_http_requests_total{method="POST",route="/graphql",status="200"}' in text
    assert 'edge_upstream_serving{service="auth"} 1.0' in text
    assert 'edge_upstream_serving{service="billing"} 0.0' in text


async def test_unknown_paths_share_one_metric_label(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}) as e:
        missing = await e.client.get("/no/such/path/12345")
        text = (await e.client.get("/metrics")).text

    assert missing.status_code == 404
    assert 'route="other"' in text
    assert "/no/such/path/12345" not in text


async def test_service_calls_carry_the_configured_deadline(edge: EdgeFactory) -> None:
    """The deadline a service sees on an edge call is `edge_call_timeout_s` (5 s unless configured)."""
    remaining: list[float] = []

    async def log_in(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        left = context.time_remaining()
        assert left is not None
        remaining.append(left)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no such account")
        return b""  # not reached: abort raises

    log_in_mutation = 'mutation { logIn(email: "a@b.example", password: "x") { user { id } } }'
    async with unary_server("apptremind.auth.v1.AuthService", "LogIn", log_in) as auth_target:
        for settings in ({}, {"edge_call_timeout_s": 42.0}):
            async with edge(service_targets={"auth": auth_target}, **settings) as e:
                body = (await e.client.post("/graphql", json={"query": log_in_mutation})).json()
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body

    # What is left when the call arrives: the deadline minus the trip, never more than the deadline.
    default, configured = remaining
    assert 0 < default <= 5.0
    assert 5.0 < configured <= 42.0
