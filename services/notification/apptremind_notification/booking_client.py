"""What the notification-service asks booking-service, behind a small Protocol so tests can serve it from
a real gRPC test servicer.

The calls carry no user: GetReminderStatus, Confirm and Cancel are authorised by the customer's
self-service token (the reminder's manage_token).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio

from apptremind_gen.apptremind.booking import v1 as booking_pb
from apptremind_platform.grpc_bridge import AsyncServiceClient

BOOKING_SERVICE = "apptremind.booking.v1.BookingService"


@dataclass(frozen=True, slots=True)
class ReminderStatus:
    current: bool
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None


class BookingUnavailable(Exception):
    """booking-service did not answer (or answered a transient error): try again later."""


class BookingRefused(Exception):
    """booking-service refused the request (bad or expired token, unknown appointment, wrong state)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Booking(Protocol):
    async def reminder_status(self, manage_token: str, idempotency_key: str) -> ReminderStatus: ...

    async def confirm(self, manage_token: str) -> None: ...

    async def cancel(self, manage_token: str, reason: str) -> None: ...


_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        # Not deployed yet (an older booking-service during a rollout): retry, then the DLQ keeps it.
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def _error(err: grpc.aio.AioRpcError) -> Exception:
    if err.code() in _TRANSIENT:
        return BookingUnavailable(f"booking-service: {err.code().name}: {err.details()}")
    return BookingRefused(err.code().name, err.details() or "")


class GrpcBooking:
    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 5.0, max_inflight: int = 32) -> None:
        # Status checks queue in the client rather than all racing their deadlines at booking-service at once.
        self._client = AsyncServiceClient(channel, BOOKING_SERVICE, max_inflight)
        self._timeout = timeout_s

    async def reminder_status(self, manage_token: str, idempotency_key: str) -> ReminderStatus:
        try:
            response = await self._client.call(
                "GetReminderStatus",
                booking_pb.GetReminderStatusRequest(
                    self_service_token=manage_token, idempotency_key=idempotency_key
                ),
                booking_pb.GetReminderStatusResponse,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise _error(err) from err
        appointment = response.appointment
        return ReminderStatus(
            current=response.current,
            start_time=appointment.start_time if appointment else None,
            end_time=appointment.end_time if appointment else None,
        )

    async def confirm(self, manage_token: str) -> None:
        try:
            await self._client.call(
                "ConfirmAppointment",
                booking_pb.ConfirmAppointmentRequest(self_service_token=manage_token),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise _error(err) from err

    async def cancel(self, manage_token: str, reason: str) -> None:
        try:
            await self._client.call(
                "CancelAppointment",
                booking_pb.CancelAppointmentRequest(self_service_token=manage_token, reason=reason),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise _error(err) from err
