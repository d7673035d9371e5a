"""Deposits (the billing half of the paid booking saga) against real Postgres, Kafka and stripe-mock:
AuthorizeDeposit is booking-service's alone and idempotent per appointment; Stripe's webhooks move a deposit
forward only; booking's settlement requests (real Kafka messages) are carried out at Stripe by the settler,
including the races — a release before the intent exists, an authorisation after the release."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc

from apptremind_gen.apptremind.billing import v1 as pb
from apptremind_gen.apptremind.common.v1 import Money
from apptremind_gen.apptremind.events.booking import v1 as booking_ev
from apptremind_platform.envelope import Event
from tests.fixtures.kafka_io import publish
from tests.integration.billing.support import Harness, Tenant, event, expect_error

SETTLEMENT = "booking.deposit.settlement_requested.v1"
EUR_20 = Money(amount_minor=2000, currency="EUR")


def as_service(harness: Harness, name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {harness.keys.service_token(name)}")]


async def authorize(harness: Harness, tenant: Tenant, appointment_id: str) -> pb.AuthorizeDepositResponse:
    return await harness.call(
        "AuthorizeDeposit",
        pb.AuthorizeDepositRequest(
            business_id=tenant.business_id,
            appointment_id=appointment_id,
            amount=EUR_20,
            customer_email="ann@example.com",
            description="Deposit",
        ),
        pb.AuthorizeDepositResponse,
        as_service(harness, "booking"),
    )


def intent(kind: str, tenant: Tenant, appointment_id: str, created: Any, **extra: Any) -> dict[str, Any]:
    obj = {
        "id": "pi_test_deposit",
        "object": "payment_intent",
        "amount": 2000,
        "currency": "eur",
        "metadata": {"business_id": tenant.business_id, "appointment_id": appointment_id},
        **extra,
    }
    return event(kind, obj, created)


def settle(harness: Harness, tenant: Tenant, appointment_id: str, capture: bool, reason: str) -> str:
    """Publishes booking's settlement request; returns its message id (the inbox records it once handled)."""
    action = booking_ev.DepositAction.CAPTURE if capture else booking_ev.DepositAction.RELEASE
    request = Event(
        SETTLEMENT,
        tenant.business_id,
        booking_ev.DepositSettlementRequested(
            business_id=tenant.business_id,
            appointment_id=appointment_id,
            action=action,
            reason=reason,
            amount=EUR_20,
        ),
        subject=appointment_id,
    )
    publish(harness.runtime.settings.kafka.bootstrap_servers, request)
    return str(request.id)


async def handled(harness: Harness, message_id: str) -> None:
    """Waits until the consumer has handled the message (its inbox claim commits with the handler's work)."""
    deadline = asyncio.get_running_loop().time() + 30
    while not harness.db.execute(
        "SELECT 1 FROM inbox WHERE consumer = 'billing' AND message_id = %s", (message_id,)
    ):
        assert asyncio.get_running_loop().time() < deadline, "the settlement request was never handled"
        await asyncio.sleep(0.05)


async def row_becomes(harness: Harness, appointment_id: str, expected: tuple[Any, ...]) -> None:
    """(status, settle_action, reason) reaches `expected` (the consumer and the settler run on their own)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        rows = harness.db.execute(
            "SELECT status, settle_action, reason FROM deposit WHERE appointment_id = %s", (appointment_id,)
        )
        if rows and tuple(rows[0]) == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, rows
        await asyncio.sleep(0.05)


def deposit_topics(harness: Harness, tenant: Tenant) -> list[str]:
    return [t for t in harness.topics(tenant.business_id) if t.startswith("billing.deposit.")]


async def test_authorize_is_for_booking_only_and_idempotent(harness: Harness) -> None:
    tenant, aid = harness.tenant(), str(uuid.uuid4())
    first = await authorize(harness, tenant, aid)
    assert first.deposit is not None and first.client_secret
    assert (first.deposit.status, first.deposit.amount) == (pb.DepositStatus.PENDING, Money(2000, "eur"))
    assert first.deposit.payment_intent_id.startswith("pi_")
    again = await authorize(harness, tenant, aid)
    assert again.deposit is not None
    assert again.deposit.payment_intent_id == first.deposit.payment_intent_id
    assert harness.count("deposit", tenant.business_id) == 1

    request = pb.AuthorizeDepositRequest(business_id=tenant.business_id, appointment_id=aid, amount=EUR_20)
    for metadata in (tenant.owner, as_service(harness, "notification")):
        await expect_error(
            harness.call("AuthorizeDeposit", request, pb.AuthorizeDepositResponse, metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "service_not_allowed",
        )
    await expect_error(
        harness.call("AuthorizeDeposit", request, pb.AuthorizeDepositResponse),
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    for amount, reason in ((Money(0, "EUR"), "invalid_amount"), (Money(100, "EURO"), "invalid_currency")):
        await expect_error(
            harness.call(
                "AuthorizeDeposit",
                pb.AuthorizeDepositRequest(business_id=tenant.business_id, appointment_id=aid, amount=amount),
                pb.AuthorizeDepositResponse,
                as_service(harness, "booking"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    assert harness.count("deposit", tenant.business_id) == 1


async def test_authorised_then_captured_on_completion(harness: Harness) -> None:
    tenant, aid = harness.tenant(), str(uuid.uuid4())
    await authorize(harness, tenant, aid)
    body = intent(
        "payment_intent.amount_capturable_updated",
        tenant,
        aid,
        harness.clock.now(),
        status="requires_capture",
    )
    answers = [await harness.webhook(body) for _ in range(2)]
    assert [(a.applied, a.duplicate) for a in answers] == [(True, False), (False, True)]
    found = await harness.call(
        "GetDeposit",
        pb.GetDepositRequest(business_id=tenant.business_id, appointment_id=aid),
        pb.GetDepositResponse,
        tenant.staff,
    )
    assert found.deposit is not None and found.deposit.status == pb.DepositStatus.AUTHORIZED

    settle(harness, tenant, aid, capture=True, reason="completed")
    await row_becomes(harness, aid, ("captured", None, "completed"))
    assert deposit_topics(harness, tenant) == ["billing.deposit.authorized.v1", "billing.deposit.captured.v1"]
    [captured] = harness.events("billing.deposit.captured.v1", tenant.business_id)
    assert captured.deposit.status == pb.DepositStatus.CAPTURED


async def test_declined_fails_and_the_intent_is_cancelled(harness: Harness) -> None:
    tenant, aid = harness.tenant(), str(uuid.uuid4())
    await authorize(harness, tenant, aid)
    body = intent(
        "payment_intent.payment_failed",
        tenant,
        aid,
        harness.clock.now(),
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    assert (await harness.webhook(body)).applied
    await row_becomes(harness, aid, ("failed", None, "insufficient_funds"))
    [failed] = harness.events("billing.deposit.failed.v1", tenant.business_id)
    assert (failed.deposit.appointment_id, failed.deposit.reason) == (aid, "insufficient_funds")
    # A late authorisation (a second card) cannot revive it: the money goes back.
    late = intent("payment_intent.amount_capturable_updated", tenant, aid, harness.clock.now())
    assert (await harness.webhook(late)).applied
    await row_becomes(harness, aid, ("failed", None, "insufficient_funds"))
    assert "billing.deposit.authorized.v1" not in deposit_topics(harness, tenant)


async def test_release_before_the_intent_exists_refuses_it(harness: Harness) -> None:
    tenant, aid = harness.tenant(), str(uuid.uuid4())
    settle(harness, tenant, aid, capture=False, reason="released_expired")
    await row_becomes(harness, aid, ("released", None, "released_expired"))
    # booking asks too late (its hold lapsed while billing was unreachable): refused, no intent is made.
    await expect_error(authorize(harness, tenant, aid), grpc.StatusCode.FAILED_PRECONDITION, "deposit_closed")
    rows = harness.db.execute(
        "SELECT payment_intent_id, status FROM deposit WHERE appointment_id = %s", (aid,)
    )
    assert rows == [("", "released")]
    assert deposit_topics(harness, tenant) == []


async def test_authorisation_after_release_is_given_back(harness: Harness) -> None:
    tenant, aid = harness.tenant(), str(uuid.uuid4())
    await authorize(harness, tenant, aid)
    settle(harness, tenant, aid, capture=False, reason="released_expired")
    await row_becomes(harness, aid, ("released", None, "released_expired"))
    late = intent("payment_intent.amount_capturable_updated", tenant, aid, harness.clock.now())
    assert (await harness.webhook(late)).applied
    # Not the state from before the webhook: the webhook committed settle_action = 'release' before it
    # answered, so this waits for the settler to cancel the intent (and publish the second release).
    await row_becomes(harness, aid, ("released", None, "released_expired"))
    topics = deposit_topics(harness, tenant)
    assert "billing.deposit.authorized.v1" not in topics
    assert topics.count("billing.deposit.released.v1") == 2  # the release, then the late authorisation's
    # Capture cannot follow a release. The row already looks like this, so waiting for it (or sleeping)
    # proves nothing on a slow machine: wait until the consumer has handled the capture request, then look.
    await handled(harness, settle(harness, tenant, aid, capture=True, reason="completed"))
    rows = harness.db.execute(
        "SELECT status, settle_action, reason FROM deposit WHERE appointment_id = %s", (aid,)
    )
    assert [tuple(r) for r in rows] == [("released", None, "released_expired")]
    assert "billing.deposit.captured.v1" not in deposit_topics(harness, tenant)
