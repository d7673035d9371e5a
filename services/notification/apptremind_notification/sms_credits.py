"""SMS credits: billing-service meters SMS per plan, and every SMS reminder holds one credit while it is sent.

Before an SMS goes to the provider the pipeline reserves one unit of the `sms` meter (ReserveUsage, the
delivery id as the reservation id, so a retried message holds the same reservation), commits it once the
provider accepted the message, and releases it when the send failed. A crash in between leaves the
reservation to expire in billing (its TTL), giving the unit back. When the plan's quota is spent, the
reminder falls back to e-mail (see dispatch). The calls are made as notification-service itself, with its
service token (docs/adr/0013-service-credentials.md).
"""

from __future__ import annotations

import uuid
from typing import Protocol

import grpc
import grpc.aio

from apptremind_gen.apptremind.billing import v1 as billing_pb
from apptremind_platform.grpc_bridge import AsyncServiceClient
from apptremind_platform.logs import get_logger
from apptremind_platform.processing import Retryable
from apptremind_platform.service_credentials import (
    ServiceCredentialsUnavailable,
    ServiceTokens,
    bearer_metadata,
)

log = get_logger(__name__)

BILLING_SERVICE = "apptremind.billing.v1.BillingService"
SMS_METER = "sms"
# Long enough for a provider call and its retries inside one attempt; a crash gives the unit back after it.
RESERVATION_TTL_S = 600


class BillingUnavailable(Retryable):
    """billing-service could not say whether the SMS is covered: the message is retried later."""


class SmsCredits(Protocol):
    async def reserve(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> bool:
        """True when one SMS is reserved; False when the plan's quota is spent."""
        ...

    async def commit(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None: ...

    async def release(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None: ...


class Unmetered:
    """Every SMS covered: for deployments and harnesses without billing (APPTREMIND_SMS_METERING=false)."""

    async def reserve(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> bool:
        return True

    async def commit(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None:
        return None

    async def release(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None:
        return None


# A repeated commit or release of a reservation that already ended that way is a no-op at billing; one that
# ended otherwise (expired, released, committed) needs nothing more from us either.
_SETTLED = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})


class GrpcSmsCredits:
    def __init__(
        self, channel: grpc.aio.Channel, tokens: ServiceTokens, timeout_s: float = 5.0, max_inflight: int = 32
    ) -> None:
        # Calls queue in the client rather than all racing their deadlines at billing-service at once.
        self._client = AsyncServiceClient(channel, BILLING_SERVICE, max_inflight)
        self._tokens = tokens
        self._timeout = timeout_s

    async def _metadata(self) -> list[tuple[str, str]]:
        try:
            return await bearer_metadata(self._tokens)
        except ServiceCredentialsUnavailable as err:  # auth-service unreachable or refusing our credentials
            raise BillingUnavailable(f"no service token for billing: {err}") from err

    async def reserve(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> bool:
        try:
            await self._client.call(
                "ReserveUsage",
                billing_pb.ReserveUsageRequest(
                    business_id=str(business_id),
                    meter=SMS_METER,
                    quantity=1,
                    reservation_id=str(reservation_id),
                    ttl_seconds=RESERVATION_TTL_S,
                ),
                billing_pb.ReserveUsageResponse,
                metadata=await self._metadata(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return False
            raise BillingUnavailable(f"billing-service: {err.code().name}: {err.details()}") from err
        return True

    async def commit(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None:
        await self._settle("CommitUsage", billing_pb.CommitUsageRequest, business_id, reservation_id)

    async def release(self, business_id: uuid.UUID, reservation_id: uuid.UUID) -> None:
        await self._settle("ReleaseUsage", billing_pb.ReleaseUsageRequest, business_id, reservation_id)

    async def _settle(
        self,
        method: str,
        request: type[billing_pb.CommitUsageRequest] | type[billing_pb.ReleaseUsageRequest],
        business_id: uuid.UUID,
        reservation_id: uuid.UUID,
    ) -> None:
        # After the provider's answer nothing may undo the send, so this never raises: a reservation billing
        # did not hear about expires after its TTL (an uncounted SMS at worst, never a second one).
        try:
            await self._client.call(
                method,
                request(business_id=str(business_id), reservation_id=str(reservation_id)),
                metadata=await self._metadata(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() not in _SETTLED:
                log.warning(
                    "sms_credit_not_settled", method=method, code=err.code().name, business=str(business_id)
                )
        except BillingUnavailable as err:
            log.warning("sms_credit_not_settled", method=method, error=str(err), business=str(business_id))
