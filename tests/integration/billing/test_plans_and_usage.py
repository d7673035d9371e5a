"""Plans, the default free subscription, entitlement checks and usage reservations against real Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import grpc.aio

from apptremind_gen.apptremind.billing import v1 as pb
from tests.integration.billing.support import Harness, Tenant, expect_error


async def _reserve(
    h: Harness, t: Tenant, quantity: int = 1, rid: str | None = None, ttl: int = 0
) -> pb.ReserveUsageResponse:
    return await h.call(
        "ReserveUsage",
        pb.ReserveUsageRequest(
            business_id=t.business_id,
            meter="sms",
            quantity=quantity,
            reservation_id=rid or str(uuid.uuid4()),
            ttl_seconds=ttl,
        ),
        pb.ReserveUsageResponse,
        t.staff,
    )


async def _usage(h: Harness, t: Tenant) -> pb.Usage:
    response = await h.call(
        "GetUsage", pb.GetUsageRequest(business_id=t.business_id, meter="sms"), pb.GetUsageResponse, t.staff
    )
    [usage] = response.usage
    return usage


async def test_plans_are_listed_with_their_entitlements(harness: Harness) -> None:
    response = await harness.call("ListPlans", pb.ListPlansRequest(), pb.ListPlansResponse)
    by_id = {p.plan_id: p for p in response.plans}
    assert [p.plan_id for p in response.plans] == ["free", "pro", "business"]
    assert by_id["free"].entitlements == {"staff_seats": 1, "sms_per_month": 10, "custom_templates": 0}
    assert by_id["pro"].entitlements == {"staff_seats": 5, "sms_per_month": 500, "custom_templates": 1}
    assert by_id["business"].entitlements["staff_seats"] == -1
    assert by_id["pro"].price_minor == 2900


async def test_a_new_business_is_on_the_free_plan(harness: Harness) -> None:
    t = harness.tenant()
    sub = await harness.subscription(t)
    assert (sub.plan, sub.status, sub.entitlements["sms_per_month"]) == (
        "free",
        pb.SubscriptionStatus.FREE,
        10,
    )
    # Reading writes nothing.
    assert harness.count("subscription", t.business_id) == 0


async def test_reads_are_for_members_and_ids_are_checked(harness: Harness) -> None:
    t, other = harness.tenant(), harness.tenant()
    request = pb.GetSubscriptionRequest(business_id=t.business_id)
    await expect_error(
        harness.call("GetSubscription", request, pb.GetSubscriptionResponse, other.owner),
        grpc.StatusCode.PERMISSION_DENIED,
        "not_a_member",
    )
    await expect_error(
        harness.call("GetSubscription", request, pb.GetSubscriptionResponse),
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    bad = harness.metadata(str(uuid.uuid4()), {"not-a-uuid": "owner"})
    await expect_error(
        harness.call(
            "GetSubscription",
            pb.GetSubscriptionRequest(business_id="not-a-uuid"),
            pb.GetSubscriptionResponse,
            bad,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_business_id",
    )


async def test_check_entitlement_for_counted_and_metered_features(harness: Harness) -> None:
    t = harness.tenant()

    async def check(feature: str, in_use: int = 0) -> pb.CheckEntitlementResponse:
        return await harness.call(
            "CheckEntitlement",
            pb.CheckEntitlementRequest(business_id=t.business_id, feature=feature, in_use=in_use),
            pb.CheckEntitlementResponse,
            t.staff,
        )

    # Free has one staff seat: the first may be added, a second not.
    assert (await check("staff_seats", 0)).allowed
    assert not (await check("staff_seats", 1)).allowed
    assert not (await check("custom_templates")).allowed
    await _reserve(harness, t, quantity=10)
    sms = await check("sms_per_month")
    assert (sms.allowed, sms.limit, sms.used) == (False, 10, 10)
    await expect_error(check("teleportation"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_feature")


async def test_fifty_concurrent_reservations_against_a_quota_of_ten(harness: Harness) -> None:
    t = harness.tenant()
    results = await asyncio.gather(*(_reserve(harness, t) for _ in range(50)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, pb.ReserveUsageResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 10
    assert len(refused) == 40
    assert {(e.code(), dict(e.trailing_metadata() or ()).get("x-error-reason")) for e in refused} == {
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_exceeded")
    }
    usage = await _usage(harness, t)
    assert (usage.limit, usage.used, usage.reserved) == (10, 0, 10)
    [(reserved,)] = harness.db.execute(
        "SELECT reserved FROM usage_period WHERE business_id = %s", (t.business_id,)
    )
    assert reserved == 10
    assert harness.count("usage_reservation", t.business_id) == 10


async def test_commit_release_and_replay(harness: Harness) -> None:
    t = harness.tenant()
    held = [await _reserve(harness, t, quantity=2) for _ in range(5)]
    await expect_error(_reserve(harness, t), grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_exceeded")
    first, second = (r.reservation.reservation_id for r in held[:2])  # type: ignore[union-attr]

    committed = await harness.call(
        "CommitUsage",
        pb.CommitUsageRequest(business_id=t.business_id, reservation_id=first),
        pb.CommitUsageResponse,
        t.staff,
    )
    assert (
        committed.reservation is not None and committed.reservation.status == pb.ReservationStatus.COMMITTED
    )
    released = await harness.call(
        "ReleaseUsage",
        pb.ReleaseUsageRequest(business_id=t.business_id, reservation_id=second),
        pb.ReleaseUsageResponse,
        t.staff,
    )
    assert released.reservation is not None and released.reservation.status == pb.ReservationStatus.RELEASED
    usage = await _usage(harness, t)
    assert (usage.used, usage.reserved) == (2, 6)

    # Settling twice is a no-op; settling the other way is refused.
    again = await harness.call(
        "CommitUsage",
        pb.CommitUsageRequest(business_id=t.business_id, reservation_id=first),
        pb.CommitUsageResponse,
        t.staff,
    )
    assert again.reservation is not None and again.reservation.status == pb.ReservationStatus.COMMITTED
    await expect_error(
        harness.call(
            "ReleaseUsage",
            pb.ReleaseUsageRequest(business_id=t.business_id, reservation_id=first),
            pb.ReleaseUsageResponse,
            t.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "reservation_committed",
    )
    await expect_error(
        harness.call(
            "CommitUsage",
            pb.CommitUsageRequest(business_id=t.business_id, reservation_id=second),
            pb.CommitUsageResponse,
            t.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "reservation_released",
    )
    # The released units can be held again; repeating a reservation id does not hold twice.
    rid = str(uuid.uuid4())
    assert not (await _reserve(harness, t, quantity=2, rid=rid)).replayed
    assert (await _reserve(harness, t, quantity=2, rid=rid)).replayed
    await expect_error(
        _reserve(harness, t, quantity=1, rid=rid),
        grpc.StatusCode.FAILED_PRECONDITION,
        "reservation_id_reused",
    )
    usage = await _usage(harness, t)
    assert (usage.used, usage.reserved) == (2, 8)
    await expect_error(
        harness.call(
            "CommitUsage",
            pb.CommitUsageRequest(business_id=t.business_id, reservation_id=str(uuid.uuid4())),
            pb.CommitUsageResponse,
            t.staff,
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_not_found",
    )


async def test_stale_reservations_expire_and_give_their_units_back(harness: Harness) -> None:
    t = harness.tenant()
    held = await _reserve(harness, t, quantity=10, ttl=60)
    await expect_error(_reserve(harness, t), grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_exceeded")
    harness.clock.advance(dt.timedelta(seconds=61))
    # The expired hold no longer counts, and a new reservation may take its place.
    assert (await _usage(harness, t)).reserved == 0
    await _reserve(harness, t, quantity=10)
    assert held.reservation is not None
    await expect_error(
        harness.call(
            "CommitUsage",
            pb.CommitUsageRequest(business_id=t.business_id, reservation_id=held.reservation.reservation_id),
            pb.CommitUsageResponse,
            t.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "reservation_expired",
    )
    [(status,)] = harness.db.execute(
        "SELECT status FROM usage_reservation WHERE business_id = %s AND reservation_id = %s",
        (t.business_id, held.reservation.reservation_id),
    )
    assert status == "expired"
    [(reserved,)] = harness.db.execute(
        "SELECT reserved FROM usage_period WHERE business_id = %s", (t.business_id,)
    )
    assert reserved == 10


async def test_bad_reservations_are_refused_and_write_nothing(harness: Harness) -> None:
    t = harness.tenant()
    cases = [
        (
            pb.ReserveUsageRequest(
                business_id=t.business_id, meter="fax", quantity=1, reservation_id=str(uuid.uuid4())
            ),
            "invalid_meter",
        ),
        (
            pb.ReserveUsageRequest(
                business_id=t.business_id, meter="sms", quantity=0, reservation_id=str(uuid.uuid4())
            ),
            "invalid_quantity",
        ),
        (
            pb.ReserveUsageRequest(business_id=t.business_id, meter="sms", quantity=1, reservation_id="x"),
            "invalid_reservation_id",
        ),
        (
            pb.ReserveUsageRequest(
                business_id=t.business_id,
                meter="sms",
                quantity=1,
                reservation_id=str(uuid.uuid4()),
                ttl_seconds=-5,
            ),
            "invalid_ttl",
        ),
    ]
    for request, reason in cases:
        await expect_error(
            harness.call("ReserveUsage", request, pb.ReserveUsageResponse, t.staff),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    assert harness.count("usage_period", t.business_id) == 0
    assert harness.count("usage_reservation", t.business_id) == 0


async def test_notification_meters_sms_on_its_own_behalf_and_no_other_service_may(harness: Harness) -> None:
    t = harness.tenant()
    as_notification = [("authorization", f"Bearer {harness.keys.service_token('notification')}")]
    reservation_id = str(uuid.uuid4())
    reserved = await harness.call(
        "ReserveUsage",
        pb.ReserveUsageRequest(
            business_id=t.business_id, meter="sms", quantity=1, reservation_id=reservation_id
        ),
        pb.ReserveUsageResponse,
        as_notification,
    )
    assert reserved.reservation is not None
    await harness.call(
        "CommitUsage",
        pb.CommitUsageRequest(business_id=t.business_id, reservation_id=reservation_id),
        pb.CommitUsageResponse,
        as_notification,
    )
    usage = await harness.call(
        "GetUsage", pb.GetUsageRequest(business_id=t.business_id), pb.GetUsageResponse, t.staff
    )
    assert [(u.meter, u.used) for u in usage.usage] == [("sms", 1)]
    as_booking = [("authorization", f"Bearer {harness.keys.service_token('booking')}")]
    await expect_error(
        harness.call(
            "ReserveUsage",
            pb.ReserveUsageRequest(
                business_id=t.business_id, meter="sms", quantity=1, reservation_id=str(uuid.uuid4())
            ),
            pb.ReserveUsageResponse,
            as_booking,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "service_not_allowed",
    )
    # Reads stay with the business's members.
    await expect_error(
        harness.call(
            "GetUsage", pb.GetUsageRequest(business_id=t.business_id), pb.GetUsageResponse, as_notification
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "user_token_required",
    )
