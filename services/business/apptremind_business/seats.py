"""The staff-seat limit: billing-service decides how many staff members a business's plan allows.

CreateStaff asks billing's CheckEntitlement (feature staff_seats, in_use = the current staff count) with the
caller's own access token before it writes anything. When billing cannot answer, the seat is refused with
UNAVAILABLE: letting it through would hand out seats nobody paid for, and the caller can simply retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio

from apptremind_gen.apptremind.billing import v1 as billing_pb
from apptremind_platform.errors import FailedPrecondition, Unavailable
from apptremind_platform.grpc_bridge import AsyncServiceClient

BILLING_SERVICE = "apptremind.billing.v1.BillingService"
STAFF_SEATS = "staff_seats"
UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class SeatAllowance:
    allowed: bool
    # How many staff members the plan allows in all; UNLIMITED for no limit.
    limit: int
    plan: str

    def admits(self, in_use: int) -> bool:
        """Whether one more staff member fits next to `in_use` (checked again under the business's lock)."""
        return self.limit == UNLIMITED or in_use < self.limit


def seat_limit_reached(allowance: SeatAllowance) -> FailedPrecondition:
    return FailedPrecondition(
        "seat_limit_reached",
        f"the {allowance.plan or 'current'} plan allows {allowance.limit} staff member(s); upgrade to add more",
        limit=str(allowance.limit),
        plan=allowance.plan,
    )


class Seats(Protocol):
    async def allowance(self, business_id: str, in_use: int) -> SeatAllowance: ...


class GrpcSeats:
    """CheckEntitlement over gRPC; the caller's token travels along (grpc_bridge.outgoing_metadata)."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self._client = AsyncServiceClient(channel, BILLING_SERVICE)
        self._timeout = timeout_s

    async def allowance(self, business_id: str, in_use: int) -> SeatAllowance:
        try:
            response = await self._client.call(
                "CheckEntitlement",
                billing_pb.CheckEntitlementRequest(
                    business_id=business_id, feature=STAFF_SEATS, in_use=in_use
                ),
                billing_pb.CheckEntitlementResponse,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            # Whatever went wrong, no answer means no seat.
            raise Unavailable(
                "billing_unavailable",
                f"the staff-seat limit could not be checked (billing-service: {err.code().name}); try again",
            ) from err
        return SeatAllowance(response.allowed, response.limit, response.plan)


class UncheckedSeats:
    """Every seat allowed: only for test harnesses that run without billing (billing_seat_check=false)."""

    async def allowance(self, business_id: str, in_use: int) -> SeatAllowance:
        return SeatAllowance(True, UNLIMITED, "")
