"""Every GraphQL operation that names a business or its rows, called by the owner of business A with
business B's ids: refused, and nothing read or written in any table of either service."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Platform
from tests.e2e.test_signup_and_catalog import sign_up_owner
from tests.fixtures.db import ServiceDb


def snapshot(db: ServiceDb) -> dict[str, int]:
    tables = db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' AND position('yoyo' in table_name) = 0"
    )
    return {str(t): int(db.execute(f'SELECT count(*) FROM "{t}"')[0][0]) for (t,) in tables}  # type: ignore[arg-type]


CASES: list[tuple[str, str, str]] = [
    ("business", "query($b: ID!) { business(id: $b) { name } }", "FORBIDDEN"),
    ("business.staff", "query($b: ID!) { business(id: $b) { staff { nodes { id } } } }", "FORBIDDEN"),
    ("reminderPolicy", "query($b: ID!) { reminderPolicy(businessId: $b) { offsetsMinutes } }", "FORBIDDEN"),
    (
        "updateBusiness",
        'mutation($b: ID!) { updateBusiness(input: {businessId: $b, name: "Mine"}) { id } }',
        "FORBIDDEN",
    ),
    (
        "inviteStaff",
        'mutation($b: ID!) { inviteStaff(businessId: $b, email: "x@example.com", role: STAFF) { token } }',
        "FORBIDDEN",
    ),
    (
        "createStaff",
        'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "Mole"}) { id } }',
        "FORBIDDEN",
    ),
    (
        "setWorkingHours",
        'mutation($b: ID!, $s: ID!) { setWorkingHours(input: {businessId: $b, staffId: $s, hours: [{weekday: 2, startTime: "08:00", endTime: "09:00"}]}) { staffId } }',
        "FORBIDDEN",
    ),
    (
        "addTimeOff",
        'mutation($b: ID!, $s: ID!) { addTimeOff(input: {businessId: $b, staffId: $s, startTime: "2027-01-01T00:00:00Z", endTime: "2027-01-02T00:00:00Z"}) { id } }',
        "FORBIDDEN",
    ),
    (
        "createService",
        'mutation($b: ID!) { createService(input: {businessId: $b, name: "X", durationMinutes: 30, priceMinor: 1}) { id } }',
        "FORBIDDEN",
    ),
    (
        "updateService",
        "mutation($b: ID!, $v: ID!) { updateService(input: {businessId: $b, serviceId: $v, priceMinor: 1}) { id } }",
        "FORBIDDEN",
    ),
    (
        "updateReminderPolicy",
        "mutation($b: ID!) { updateReminderPolicy(input: {businessId: $b, offsetsMinutes: [5], channels: [SMS]}) { offsetsMinutes } }",
        "FORBIDDEN",
    ),
    # A's own business with B's rows inside: B's rows do not exist for A.
    (
        "setWorkingHours(own business, foreign staff)",
        'mutation($a: ID!, $s: ID!) { setWorkingHours(input: {businessId: $a, staffId: $s, hours: [{weekday: 2, startTime: "08:00", endTime: "09:00"}]}) { staffId } }',
        "NOT_FOUND",
    ),
    (
        "createService(own business, foreign staff)",
        'mutation($a: ID!, $s: ID!) { createService(input: {businessId: $a, name: "X", durationMinutes: 30, priceMinor: 1, staffIds: [$s]}) { id } }',
        "NOT_FOUND",
    ),
    (
        "updateService(own business, foreign service)",
        "mutation($a: ID!, $v: ID!) { updateService(input: {businessId: $a, serviceId: $v, priceMinor: 1}) { id } }",
        "NOT_FOUND",
    ),
    (
        "addTimeOff(own business, foreign staff)",
        'mutation($a: ID!, $s: ID!) { addTimeOff(input: {businessId: $a, staffId: $s, startTime: "2027-01-01T00:00:00Z", endTime: "2027-01-02T00:00:00Z"}) { id } }',
        "NOT_FOUND",
    ),
]


@pytest.fixture
async def two_tenants(platform: Platform) -> dict[str, Any]:
    a = await sign_up_owner(platform, "tenant-a")
    b = await sign_up_owner(platform, "tenant-b")
    staff = await platform.ok(
        'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "Bea"}) { id } }',
        b["token"],
        b=b["business_id"],
    )
    service = await platform.ok(
        'mutation($b: ID!) { createService(input: {businessId: $b, name: "Secret", durationMinutes: 30, priceMinor: 100}) { id } }',
        b["token"],
        b=b["business_id"],
    )
    return {"a": a, "b": b, "staff": staff["createStaff"]["id"], "service": service["createService"]["id"]}


async def test_member_of_a_cannot_touch_b(platform: Platform, two_tenants: dict[str, Any]) -> None:
    a, b = two_tenants["a"], two_tenants["b"]
    ids = {
        "a": a["business_id"],
        "b": b["business_id"],
        "s": two_tenants["staff"],
        "v": two_tenants["service"],
    }
    before = (snapshot(platform.auth_db), snapshot(platform.business_db))
    for name, query, code in CASES:
        variables = {k: v for k, v in ids.items() if f"${k}" in query}
        body = await platform.gql(query, a["token"], **variables)
        assert body.get("errors"), f"{name} was not refused: {body}"
        assert body["errors"][0]["extensions"]["code"] == code, (name, body["errors"])
        assert body.get("data") in (None, {}), (name, body)
    assert (snapshot(platform.auth_db), snapshot(platform.business_db)) == before
