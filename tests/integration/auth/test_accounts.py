"""Accounts through the real auth-service: sign-up, log-in, GetMe, bad input, password change."""

from __future__ import annotations

import grpc

from apptremind_gen.apptremind.auth.v1 import (
    ChangePasswordRequest,
    ChangePasswordResponse,
    GetMeRequest,
    GetMeResponse,
    LogInRequest,
    LogInResponse,
    RefreshSessionRequest,
    SignUpRequest,
    SignUpResponse,
)
from apptremind_gen.apptremind.events.auth.v1 import UserCreated
from tests.integration.auth.harness import PASSWORD, Auth, claims, draft, new_email

USER_CREATED = "auth.user.created.v1"


async def test_sign_up_then_log_in_and_get_me(auth: Auth) -> None:
    email = new_email("owner")
    business = draft()
    signed = await auth.call(
        "SignUp",
        SignUpRequest(email=f"  {email.upper()} ", password=PASSWORD, business=business),
        SignUpResponse,
    )
    assert signed.user is not None and signed.session is not None
    assert signed.user.email == email
    user_id = signed.user.user_id
    assert claims(signed.session.access_token)["sub"] == user_id
    # No business yet: business-service creates it asynchronously and the saga grants the owner role.
    assert claims(signed.session.access_token)["mem"] == {}

    logged_in = await auth.call("LogIn", LogInRequest(email=email.title(), password=PASSWORD), LogInResponse)
    assert logged_in.user is not None and logged_in.session is not None
    assert logged_in.user.user_id == user_id
    assert logged_in.session.refresh_token != signed.session.refresh_token

    me = await auth.call("GetMe", GetMeRequest(), GetMeResponse, token=logged_in.session.access_token)
    assert me.user is not None
    assert (me.user.user_id, me.user.email, list(me.memberships)) == (user_id, email, [])

    # The password is stored only as an argon2id hash, refresh tokens only as digests.
    [(stored_hash,)] = auth.db.execute("SELECT password_hash FROM users WHERE user_id = %s", (user_id,))
    assert str(stored_hash).startswith("$argon2id$") and PASSWORD not in str(stored_hash)
    token_bytes = logged_in.session.refresh_token.encode()
    assert auth.count("SELECT count(*) FROM refresh_tokens WHERE token_hash = %s", (token_bytes,)) == 0

    # The saga's first step is in the outbox, committed with the user.
    # Keyed by the user: the event belongs to no business yet.
    assert auth.db.execute("SELECT topic, key FROM outbox") == [(USER_CREATED, user_id)]
    [(_, event)] = auth.outbox()
    assert isinstance(event, UserCreated)
    assert (event.user_id, event.email) == (user_id, email)
    assert event.business is not None
    assert (event.business.slug, event.business.time_zone) == (business.slug, "Europe/Berlin")


async def test_duplicate_email_is_refused_and_writes_nothing(auth: Auth) -> None:
    email = new_email()
    await auth.sign_up(email)
    code, reason = await auth.refused(
        "SignUp", SignUpRequest(email=email.upper(), password="another password", business=draft())
    )
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "email_taken")
    assert auth.count("SELECT count(*) FROM users") == 1
    assert auth.count("SELECT count(*) FROM outbox") == 1
    assert auth.count("SELECT count(*) FROM refresh_families") == 1


async def test_invalid_sign_up_input_is_refused_with_its_reason_and_writes_nothing(auth: Auth) -> None:
    good = {"email": new_email(), "password": PASSWORD}
    cases: list[tuple[SignUpRequest, str]] = [
        (SignUpRequest(**{**good, "email": "not-an-email"}, business=draft()), "invalid_email"),
        (SignUpRequest(**{**good, "email": "a b@example.com"}, business=draft()), "invalid_email"),
        (SignUpRequest(**{**good, "email": ""}, business=draft()), "invalid_email"),
        (SignUpRequest(**{**good, "password": "short"}, business=draft()), "weak_password"),
        (SignUpRequest(**{**good, "password": "x" * 1025}, business=draft()), "password_too_long"),
        (SignUpRequest(**good), "missing_business"),
        (SignUpRequest(**good, business=draft(name="   ")), "invalid_business_name"),
        (SignUpRequest(**good, business=draft(name="n" * 201)), "invalid_business_name"),
        (SignUpRequest(**good, business=draft(slug="sa lon")), "invalid_slug"),
        (SignUpRequest(**good, business=draft(slug="-salon")), "invalid_slug"),
        (SignUpRequest(**good, business=draft(slug="salon-")), "invalid_slug"),
        (SignUpRequest(**good, business=draft(slug="ab")), "invalid_slug"),
        (SignUpRequest(**good, business=draft(slug="s" * 64)), "invalid_slug"),
        (SignUpRequest(**good, business=draft(time_zone="Mars/Olympus")), "invalid_time_zone"),
        (SignUpRequest(**good, business=draft(time_zone="../../etc/passwd")), "invalid_time_zone"),
        (SignUpRequest(**good, business=draft(time_zone="posixrules")), "invalid_time_zone"),
        (SignUpRequest(**good, business=draft(time_zone="")), "invalid_time_zone"),
        (SignUpRequest(**good, business=draft(locale="english")), "invalid_locale"),
        (SignUpRequest(**good, business=draft(locale="en_US")), "invalid_locale"),
        (SignUpRequest(**good, business=draft(currency="eur")), "invalid_currency"),
        (SignUpRequest(**good, business=draft(currency="EURO")), "invalid_currency"),
    ]
    seen = [(await auth.refused("SignUp", request), expected) for request, expected in cases]
    assert [(code, reason) for (code, reason), _ in seen] == [
        (grpc.StatusCode.INVALID_ARGUMENT, expected) for _, expected in seen
    ]
    for table in ("users", "refresh_families", "refresh_tokens", "outbox"):
        assert auth.count(f"SELECT count(*) FROM {table}") == 0, table
    # The same request with every field valid goes through, so the cases above fail for their one field.
    await auth.call("SignUp", SignUpRequest(**good, business=draft()), SignUpResponse)
    assert auth.count("SELECT count(*) FROM users") == 1


async def test_log_in_refuses_wrong_password_and_unknown_email_alike(auth: Auth) -> None:
    email = new_email()
    await auth.sign_up(email)
    wrong_password = await auth.refused("LogIn", LogInRequest(email=email, password="wrong password!"))
    unknown_email = await auth.refused("LogIn", LogInRequest(email=new_email(), password=PASSWORD))
    malformed = await auth.refused("LogIn", LogInRequest(email="nobody", password=PASSWORD))
    assert (
        wrong_password
        == unknown_email
        == malformed
        == (grpc.StatusCode.UNAUTHENTICATED, "invalid_credentials")
    )
    # Refused log-ins start no session.
    assert auth.count("SELECT count(*) FROM refresh_families") == 1


async def test_change_password_revokes_every_session(auth: Auth) -> None:
    email = new_email()
    signed = await auth.sign_up(email)
    assert signed.session is not None
    other_device = await auth.call("LogIn", LogInRequest(email=email, password=PASSWORD), LogInResponse)
    assert other_device.session is not None
    token = signed.session.access_token
    new_password = "a much better passphrase"

    wrong = await auth.refused(
        "ChangePassword",
        ChangePasswordRequest(current_password="not my password", new_password=new_password),
        token,
    )
    assert wrong == (grpc.StatusCode.UNAUTHENTICATED, "invalid_credentials")
    weak = await auth.refused(
        "ChangePassword", ChangePasswordRequest(current_password=PASSWORD, new_password="short"), token
    )
    assert weak == (grpc.StatusCode.INVALID_ARGUMENT, "weak_password")
    anonymous = await auth.refused(
        "ChangePassword", ChangePasswordRequest(current_password=PASSWORD, new_password=new_password)
    )
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    # None of the refusals changed anything: both sessions are still live.
    assert auth.count("SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL") == 2

    await auth.call(
        "ChangePassword",
        ChangePasswordRequest(current_password=PASSWORD, new_password=new_password),
        ChangePasswordResponse,
        token=token,
    )
    for session in (signed.session, other_device.session):
        refused = await auth.refused(
            "RefreshSession", RefreshSessionRequest(refresh_token=session.refresh_token)
        )
        assert refused == (grpc.StatusCode.UNAUTHENTICATED, "refresh_token_revoked")
    old = await auth.refused("LogIn", LogInRequest(email=email, password=PASSWORD))
    assert old == (grpc.StatusCode.UNAUTHENTICATED, "invalid_credentials")
    again = await auth.call("LogIn", LogInRequest(email=email, password=new_password), LogInResponse)
    assert again.session is not None
