"""The edge's own guards, refused before any service is called: missing or forged tokens, brute-force
rate limits, query cost."""

from __future__ import annotations

from typing import Any

from apptremind_edge.rate_limit import SlidingWindow
from tests.fixtures.tokens import SigningKeys
from tests.unit.edge.conftest import EdgeFactory


async def gql(edge: Any, query: str, token: str = "", **variables: Any) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await edge.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_me_without_a_token_is_unauthenticated(edge: EdgeFactory, dead_target: str) -> None:
    async with edge(service_targets={"auth": dead_target}) as e:
        body = await gql(e, "{ me { user { id } } }")
    [error] = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED", "reason": "unauthenticated"}


async def test_a_token_the_edge_cannot_verify_is_refused(edge: EdgeFactory, dead_target: str) -> None:
    forged = SigningKeys().token("user-1", {"b": "owner"})
    async with edge(service_targets={"auth": dead_target, "business": dead_target}) as e:
        body = await gql(e, '{ business(id: "b") { name } }', token=forged)
    [error] = body["errors"]
    # The auth-service is down, so its keys cannot be fetched: refused, never trusted.
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["extensions"]["reason"] == "signing_keys_unavailable"


async def test_log_in_is_rate_limited_per_account_and_per_ip(edge: EdgeFactory, dead_target: str) -> None:
    query = 'mutation($e: String!) { logIn(email: $e, password: "x") { user { id } } }'
    async with edge(
        service_targets={"auth": dead_target},
        edge_login_per_account_per_minute=3,
        edge_login_per_ip_per_minute=5,
    ) as e:
        codes = [
            (await gql(e, query, e="a@example.com"))["errors"][0]["extensions"]["code"] for _ in range(4)
        ]
        # The service is unreachable, so allowed attempts fail UNAVAILABLE; the 4th never reaches it.
        assert codes == ["UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE", "RATE_LIMITED"]
        other = [(await gql(e, query, e=f"b{i}@example.com"))["errors"][0]["extensions"] for i in range(2)]
    assert other[0]["code"] == "UNAVAILABLE"
    assert other[1]["code"] == "RATE_LIMITED"
    assert other[1]["retryAfterSeconds"] >= 1


def test_sliding_window_forgets_old_attempts() -> None:
    now = [0.0]
    window = SlidingWindow(limit=2, window_s=60, clock=lambda: now[0])
    assert window.hit("k") is None
    assert window.hit("k") is None
    assert window.hit("k") == 60
    now[0] = 60.0
    assert window.hit("k") is None


async def test_costly_queries_are_refused_before_execution(edge: EdgeFactory, dead_target: str) -> None:
    wide = '{ business(id: "b") { staff(first: 200) { nodes { id name email active } } } }'
    async with edge(service_targets={"business": dead_target}, edge_max_query_complexity=500) as e:
        body = await gql(e, wide)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "complexity" in error["message"]


async def test_booking_without_an_idempotency_key_is_refused(edge: EdgeFactory, dead_target: str) -> None:
    query = """mutation { bookAppointment(input: {businessSlug: "s", serviceId: "x",
        startTime: "2027-01-04T09:00:00Z", customer: {name: "C"}}) { replayed } }"""
    async with edge(service_targets={"business": dead_target, "booking": dead_target}) as e:
        body = await gql(e, query)
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "reason": "idempotency_key_required"}
