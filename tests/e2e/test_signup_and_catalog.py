"""Through the real edge, real services, real Kafka and Postgres: a business owner signs up and sets up a
usable business; the saga survives business-service being down; staff join by invitation."""

from __future__ import annotations

from typing import Any

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from tests.e2e.conftest import Platform, platform_running

SIGN_UP = """
mutation($email: String!, $slug: String!) {
  signUp(input: {email: $email, password: "correct horse battery", businessName: "Salon Nord",
                 businessSlug: $slug, timeZone: "Europe/Berlin", locale: "de-DE", currency: "EUR"}) {
    user { id email } session { accessToken refreshToken } businessPending
  }
}"""
ME = "{ me { user { id email } memberships { businessId role } } }"
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }"


async def sign_up_owner(platform: Platform, name: str) -> dict[str, Any]:
    """Signs up, waits for the saga to grant the owner membership, refreshes the session to carry it."""
    data = await platform.ok(SIGN_UP, email=f"{name}@example.com", slug=name)
    session = data["signUp"]["session"]
    me = await platform.eventually(ME, session["accessToken"], lambda d: d["me"]["memberships"])
    [membership] = me["me"]["memberships"]
    assert membership["role"] == "OWNER"
    refreshed = (await platform.ok(REFRESH, t=session["refreshToken"]))["refreshSession"]
    return {
        "user_id": data["signUp"]["user"]["id"],
        "business_id": membership["businessId"],
        "token": refreshed["accessToken"],
        "refresh": refreshed["refreshToken"],
    }


async def add_staff(
    platform: Platform, token: str, business_id: str, name: str, opens: str = "08:00", closes: str = "20:00"
) -> str:
    """A staff member working every day from `opens` to `closes`; returns the staff id."""
    staff = (
        await platform.ok(
            "mutation($b: ID!, $n: String!) { createStaff(input: {businessId: $b, name: $n}) { id } }",
            token,
            b=business_id,
            n=name,
        )
    )["createStaff"]["id"]
    hours = ", ".join(f'{{weekday: {d}, startTime: "{opens}", endTime: "{closes}"}}' for d in range(1, 8))
    await platform.ok(
        f"mutation($b: ID!, $s: ID!) {{ setWorkingHours(input: {{businessId: $b, staffId: $s, hours: [{hours}]}}) {{ staffId }} }}",
        token,
        b=business_id,
        s=staff,
    )
    return str(staff)


async def test_signup_to_a_usable_business(platform: Platform) -> None:
    owner = await sign_up_owner(platform, "salon-nord")
    token, business_id = owner["token"], owner["business_id"]

    business = (
        await platform.ok(
            "query($id: ID!) { business(id: $id) { name slug timeZone currency } }", token, id=business_id
        )
    )["business"]
    assert business == {
        "name": "Salon Nord",
        "slug": "salon-nord",
        "timeZone": "Europe/Berlin",
        "currency": "EUR",
    }

    staff = (
        await platform.ok(
            'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "Ada", email: "ada@example.com"}) { id name } }',
            token,
            b=business_id,
        )
    )["createStaff"]
    hours = (
        await platform.ok(
            """mutation($b: ID!, $s: ID!) { setWorkingHours(input: {businessId: $b, staffId: $s,
                 hours: [{weekday: 1, startTime: "09:00", endTime: "17:00"}],
                 breaks: [{weekday: 1, startTime: "12:00", endTime: "12:30"}]}) { hours { weekday startTime endTime } } }""",
            token,
            b=business_id,
            s=staff["id"],
        )
    )["setWorkingHours"]
    assert hours["hours"] == [{"weekday": 1, "startTime": "09:00", "endTime": "17:00"}]
    service = (
        await platform.ok(
            """mutation($b: ID!, $s: ID!) { createService(input: {businessId: $b, name: "Cut", durationMinutes: 45,
                 priceMinor: 3500, bufferAfterMinutes: 10, staffIds: [$s]}) { id name priceMinor currency staffIds } }""",
            token,
            b=business_id,
            s=staff["id"],
        )
    )["createService"]
    assert service["currency"] == "EUR"
    assert service["staffIds"] == [staff["id"]]
    updated = (
        await platform.ok(
            "mutation($b: ID!, $v: ID!) { updateService(input: {businessId: $b, serviceId: $v, priceMinor: 4000}) { priceMinor name } }",
            token,
            b=business_id,
            v=service["id"],
        )
    )["updateService"]
    assert updated == {"priceMinor": 4000, "name": "Cut"}
    await platform.ok(
        """mutation($b: ID!, $s: ID!) { addTimeOff(input: {businessId: $b, staffId: $s,
             startTime: "2026-12-24T00:00:00+01:00", endTime: "2026-12-27T00:00:00+01:00", reason: "holidays"}) { id kind } }""",
        token,
        b=business_id,
        s=staff["id"],
    )
    policy = (
        await platform.ok(
            """mutation($b: ID!) { updateReminderPolicy(input: {businessId: $b, offsetsMinutes: [1440, 120],
                 channels: [EMAIL, SMS], quietHoursStart: "21:00", quietHoursEnd: "08:00"}) { offsetsMinutes channels } }""",
            token,
            b=business_id,
        )
    )["updateReminderPolicy"]
    assert policy == {"offsetsMinutes": [1440, 120], "channels": ["EMAIL", "SMS"]}

    overview = (
        await platform.ok(
            """query($b: ID!) { business(id: $b) { staff { nodes { name } } services { nodes { name priceMinor } }
                 dateOverrides { nodes { reason kind } } reminderPolicy { quietHoursStart } members { nodes { role } } } }""",
            token,
            b=business_id,
        )
    )["business"]
    assert overview["staff"]["nodes"] == [{"name": "Ada"}]
    assert overview["services"]["nodes"] == [{"name": "Cut", "priceMinor": 4000}]
    assert overview["dateOverrides"]["nodes"] == [{"reason": "holidays", "kind": "TIME_OFF"}]
    assert overview["reminderPolicy"]["quietHoursStart"] == "21:00"
    assert overview["members"]["nodes"] == [{"role": "OWNER"}]


async def test_invited_staff_joins_and_cannot_manage(platform: Platform) -> None:
    owner = await sign_up_owner(platform, "studio-ost")
    invite = (
        await platform.ok(
            'mutation($b: ID!) { inviteStaff(businessId: $b, email: "bo@example.com", role: STAFF) { token invitation { email role } } }',
            owner["token"],
            b=owner["business_id"],
        )
    )["inviteStaff"]
    accepted = (
        await platform.ok(
            'mutation($t: String!) { acceptInvitation(token: $t, password: "another long secret") { membership { role } session { accessToken } } }',
            t=invite["token"],
        )
    )["acceptInvitation"]
    assert accepted["membership"]["role"] == "STAFF"
    staff_token = accepted["session"]["accessToken"]
    # A member may read ...
    name = await platform.ok(
        "query($b: ID!) { business(id: $b) { name } }", staff_token, b=owner["business_id"]
    )
    assert name["business"]["name"] == "Salon Nord"
    # ... but not manage.
    body = await platform.gql(
        'mutation($b: ID!) { createStaff(input: {businessId: $b, name: "Mallory"}) { id } }',
        staff_token,
        b=owner["business_id"],
    )
    assert body["errors"][0]["extensions"] == {"code": "FORBIDDEN", "reason": "insufficient_role"}
    # The invitation cannot be used twice.
    again = await platform.gql(
        'mutation($t: String!) { acceptInvitation(token: $t, password: "another long secret") { membership { role } } }',
        t=invite["token"],
    )
    assert again["errors"][0]["extensions"]["reason"] == "invitation_used"


async def test_signup_saga_finishes_after_business_service_was_down(
    postgres: PostgresServer, kafka: KafkaBroker
) -> None:
    async with platform_running(postgres, kafka, services=("auth", "business")) as platform:
        await platform.stop("business")
        data = await platform.ok(SIGN_UP, email="late@example.com", slug="late-salon")
        token = data["signUp"]["session"]["accessToken"]
        me = await platform.ok(ME, token)
        assert me["me"]["memberships"] == []
        assert platform.business_db.execute("SELECT count(*) FROM business") == [(0,)]

        await platform.start("business")
        me = await platform.eventually(ME, token, lambda d: d["me"]["memberships"])
        assert me["me"]["memberships"][0]["role"] == "OWNER"
        assert platform.business_db.execute("SELECT slug FROM business") == [("late-salon",)]


async def test_sessions_refresh_rotation_and_reuse(platform: Platform) -> None:
    owner = await sign_up_owner(platform, "rotate-me")
    first = owner["refresh"]
    second = (await platform.ok(REFRESH, t=first))["refreshSession"]
    # Reusing a spent refresh token revokes the whole family: the newest token stops working too.
    reused = await platform.gql(REFRESH, t=first)
    assert reused["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": "refresh_token_reused"}
    revoked = await platform.gql(REFRESH, t=second["refreshToken"])
    assert revoked["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # A garbage bearer token is refused at the edge with a reason.
    body = await platform.gql(ME, token="not.a.jwt")
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": "malformed_token"}


async def test_log_in_brute_force_trips_the_rate_limit(postgres: PostgresServer, kafka: KafkaBroker) -> None:
    async with platform_running(
        postgres, kafka, services=("auth",), edge_login_per_account_per_minute=3
    ) as platform:
        await platform.ok(SIGN_UP, email="target@example.com", slug="target")
        query = 'mutation { logIn(email: "target@example.com", password: "wrong password!") { user { id } } }'
        codes = [(await platform.gql(query))["errors"][0]["extensions"]["code"] for _ in range(4)]
        assert codes == ["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]
        ok = 'mutation { logIn(email: "target@example.com", password: "correct horse battery") { user { id } } }'
        # Even the right password is refused while the account is limited: guessing gains nothing.
        assert (await platform.gql(ok))["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_a_taken_slug_is_refused_before_anything_is_created(platform: Platform) -> None:
    await sign_up_owner(platform, "only-one")
    users_before = platform.auth_db.execute("SELECT count(*) FROM users")
    body = await platform.gql(SIGN_UP, email="second@example.com", slug="only-one")
    assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "reason": "slug_taken"}
    assert platform.auth_db.execute("SELECT count(*) FROM users") == users_before
    # Bad input is refused by the auth-service with its reason, nothing written either.
    body = await platform.gql(SIGN_UP, email="third@example.com", slug="-bad-")
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "reason": "invalid_slug"}
    assert platform.auth_db.execute("SELECT count(*) FROM users") == users_before


async def test_an_expired_access_token_is_refused_and_a_refresh_recovers(platform: Platform) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from apptremind_platform.access_tokens import sign

    owner = await sign_up_owner(platform, "expiring")
    # A token the auth-service's current key signed, already past its expiry (as if 15 minutes went by).
    [(kid, raw)] = platform.auth_db.execute(
        "SELECT kid, private_key FROM signing_keys WHERE activated_at IS NOT NULL AND retired_at IS NULL"
    )
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    expired, _ = sign(
        Ed25519PrivateKey.from_private_bytes(bytes(raw)),  # type: ignore[arg-type]
        str(kid),
        owner["user_id"],
        {owner["business_id"]: "owner"},
        session_id="s",
        ttl=dt.timedelta(minutes=15),
        now=past,
    )
    body = await platform.gql("query($b: ID!) { business(id: $b) { name } }", expired, b=owner["business_id"])
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": "token_expired"}
    fresh = (await platform.ok(REFRESH, t=owner["refresh"]))["refreshSession"]["accessToken"]
    data = await platform.ok("query($b: ID!) { business(id: $b) { name } }", fresh, b=owner["business_id"])
    assert data["business"]["name"] == "Salon Nord"
