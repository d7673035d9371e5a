"""The staff-seat limit: CreateStaff asks the real billing-service (with the caller's token) before writing;
over the plan's limit, under concurrency and with billing down, nothing is written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
import grpc.aio

from apptremind_business.settings import BusinessSettings
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port
from apptremind_gen.apptremind.business import v1 as pb
from apptremind_platform.grpc_bridge import AsyncServiceClient, open_channel
from apptremind_platform.service import ServiceRuntime
from tests.fixtures.services import settings_for
from tests.integration.business.conftest import RPC_SPEC
from tests.integration.business.support import Harness, Tenant, expect_error


def create_staff(harness: Harness, tenant: Tenant, name: str) -> Awaitable[pb.CreateStaffResponse]:
    return harness.call(
        "CreateStaff",
        pb.CreateStaffRequest(business_id=tenant.business_id, name=name),
        pb.CreateStaffResponse,
        tenant.owner,
    )


def staff_count(harness: Harness, tenant: Tenant) -> int:
    [(n,)] = harness.db.execute("SELECT count(*) FROM staff WHERE business_id = %s", (tenant.business_id,))
    assert isinstance(n, int)
    return n


async def test_free_plan_allows_one_staff_member_and_refuses_the_second_writing_nothing(
    harness: Harness,
) -> None:
    tenant = await harness.signup(plan="free")
    await harness.add_staff(tenant, "Ada")
    before = harness.snapshot()

    await expect_error(
        create_staff(harness, tenant, "Bo"), grpc.StatusCode.FAILED_PRECONDITION, "seat_limit_reached"
    )

    assert harness.snapshot() == before
    assert staff_count(harness, tenant) == 1


async def test_an_upgrade_adds_seats_up_to_the_new_plans_limit(harness: Harness) -> None:
    tenant = await harness.signup(plan="free")
    await harness.add_staff(tenant, "Ada")
    await expect_error(
        create_staff(harness, tenant, "Bo"), grpc.StatusCode.FAILED_PRECONDITION, "seat_limit_reached"
    )

    await harness.billing.buy(tenant.business_id, "pro")
    for name in ("Bo", "Cy", "Di", "Ed"):
        await harness.add_staff(tenant, name)
    with_five = harness.snapshot()
    await expect_error(
        create_staff(harness, tenant, "Flo"), grpc.StatusCode.FAILED_PRECONDITION, "seat_limit_reached"
    )

    assert harness.snapshot() == with_five
    assert staff_count(harness, tenant) == 5


async def test_concurrent_additions_cannot_share_the_last_seat(harness: Harness) -> None:
    tenant = await harness.signup(plan="free")

    results = await asyncio.gather(
        *(create_staff(harness, tenant, f"Staff {i}") for i in range(8)),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, pb.CreateStaffResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1 and len(refused) == 7, results
    assert {(e.code(), dict(e.trailing_metadata() or ()).get("x-error-reason")) for e in refused} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "seat_limit_reached")
    }
    assert staff_count(harness, tenant) == 1


async def test_with_billing_unreachable_the_seat_is_refused_unavailable(
    harness: Harness, kafka: KafkaBroker
) -> None:
    tenant = await harness.signup()
    # The same database, served by a second business-service whose billing target answers nothing.
    base = settings_for(RPC_SPEC, harness.db, kafka)
    settings = BusinessSettings(
        **base.model_dump(), billing_target=f"127.0.0.1:{free_port()}", billing_timeout_s=1
    )
    runtime = ServiceRuntime(RPC_SPEC, settings, jwks=harness.keys.jwks)
    await runtime.start()
    try:
        async with open_channel(f"127.0.0.1:{runtime.port}") as channel:
            client = AsyncServiceClient(channel, harness.client.service)
            before = harness.snapshot()
            await expect_error(
                client.call(
                    "CreateStaff",
                    pb.CreateStaffRequest(business_id=tenant.business_id, name="Ada"),
                    pb.CreateStaffResponse,
                    metadata=tenant.owner,
                    timeout=10,
                ),
                grpc.StatusCode.UNAVAILABLE,
                "billing_unavailable",
            )
            assert harness.snapshot() == before
    finally:
        await runtime.stop(0)
    # Through the service whose billing answers, the same request succeeds.
    await harness.add_staff(tenant, "Ada")


async def test_bad_input_is_refused_before_billing_is_asked(harness: Harness) -> None:
    tenant = await harness.signup(plan="free")
    await harness.add_staff(tenant, "Ada")
    # Over the seat limit, but the name is the first thing wrong.
    await expect_error(create_staff(harness, tenant, " "), grpc.StatusCode.INVALID_ARGUMENT, "invalid_name")
