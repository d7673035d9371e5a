"""The booking-service's gRPC servicer (apptremind.booking.v1.BookingService).

Thin on purpose: authorise, convert, run the use case in one unit of work, convert back. GetAvailability
and BookAppointment are public; Cancel and Reschedule take a member's token or the customer's self-service
token; the rest need a member of the business.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.common.v1 import Money
from apptremind_platform.clock import Clock
from apptremind_platform.db import Conn, unit_of_work
from apptremind_platform.errors import PermissionDenied
from apptremind_platform.identity import current_caller

from . import service, tokens
from .availability import Slot
from .availability_cache import AvailabilityCache
from .deposits import Deposits
from .repository import AppointmentRow
from .wire import SlotEncoder

SERVICE = "apptremind.booking.v1.BookingService"

Context = Any  # grpc.aio.ServicerContext; unused, the interceptor maps errors to statuses

_STATUS_TO_PB = {
    "booked": pb.AppointmentStatus.BOOKED,
    "cancelled": pb.AppointmentStatus.CANCELLED,
    "completed": pb.AppointmentStatus.COMPLETED,
    "no_show": pb.AppointmentStatus.NO_SHOW,
    "held": pb.AppointmentStatus.HELD,
    "released": pb.AppointmentStatus.RELEASED,
}
_STATUS_FROM_PB = {int(v): k for k, v in _STATUS_TO_PB.items()}


def appointment(a: AppointmentRow) -> pb.Appointment:
    return pb.Appointment(
        appointment_id=str(a.appointment_id),
        business_id=str(a.business_id),
        staff_id=str(a.staff_id),
        service_id=str(a.service_id),
        start_time=a.start_time,
        end_time=a.end_time,
        status=_STATUS_TO_PB[a.status],
        customer=pb.Customer(
            name=a.customer_name,
            email=a.customer_email,
            phone=a.customer_phone,
            time_zone=a.customer_time_zone,
            locale=a.customer_locale,
        ),
        created_at=a.created_at,
        confirmed_at=a.confirmed_at,
        deposit=_money(a) if a.deposit_minor else None,
        hold_expires_at=a.hold_expires_at,
    )


def _money(a: AppointmentRow) -> Money:
    return Money(amount_minor=a.deposit_minor, currency=a.deposit_currency)


def _member(business_id: str) -> uuid.UUID:
    # Authorise before parsing: an outsider learns nothing from the shape of the ids it sends.
    current_caller.get().require_role(business_id)
    return service.parse_id(business_id, "business_id")


class BookingServiceServicer:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        clock: Clock,
        token_secret: str,
        availability_cache: AvailabilityCache | None = None,
        deposits: Deposits | None = None,
        hold_ttl: dt.timedelta = dt.timedelta(minutes=15),
    ) -> None:
        self._pool = pool
        self._deposits = deposits
        # Without billing, services with a deposit cannot be booked (service.book refuses them).
        self._hold_ttl = hold_ttl if deposits is not None else None
        self._clock = clock
        self._secret = token_secret
        self._cache = availability_cache
        self._encoder = SlotEncoder()

    def _customer_or_member(
        self, business_id: str, appointment_id: str, token: str
    ) -> tuple[uuid.UUID, str, str]:
        """(business id, appointment id, who acts): the customer with a valid self-service token (ids
        given in the request must match the token's), else a member of the business."""
        if token:
            bid, aid = tokens.verify(self._secret, token, self._clock.now())
            if (business_id and business_id != str(bid)) or (appointment_id and appointment_id != str(aid)):
                raise PermissionDenied(
                    "invalid_self_service_token", "the self-service token is not valid here"
                )
            return bid, str(aid), "customer"
        return _member(business_id), appointment_id, "business"

    async def get_availability(
        self, request: pb.GetAvailabilityRequest, context: Context
    ) -> pb.GetAvailabilityResponse:
        async with self._pool.connection() as conn:
            # A read: each statement in autocommit instead of BEGIN ... COMMIT, two round trips fewer per
            # request. Every statement sees the latest committed data, as in a READ COMMITTED transaction,
            # so ADR 0010's argument (generation read first) holds unchanged.
            await conn.set_autocommit(True)
            try:
                slots = await self._availability(conn, request)
            finally:
                if not conn.closed:  # a broken connection is discarded by the pool anyway
                    await conn.set_autocommit(False)
        # Same message, encoded from memoised slot encodings (see wire.py).
        return self._encoder.response(slots)

    async def _availability(self, conn: Conn, request: pb.GetAvailabilityRequest) -> list[tuple[Slot, str]]:
        return await service.get_availability(
            conn,
            request.business_id,
            request.service_id,
            request.staff_id,
            request.from_time,
            request.to_time,
            request.time_zone,
            self._clock.now(),
            self._cache,
            business_slug=request.business_slug,
        )

    async def book_appointment(
        self, request: pb.BookAppointmentRequest, context: Context
    ) -> pb.BookAppointmentResponse:
        c = request.customer or pb.Customer()
        customer = service.CustomerInput(c.name, c.email, c.phone, c.time_zone, c.locale)
        async with unit_of_work(self._pool) as conn:
            booked = await service.book(
                conn,
                business_id=request.business_id,
                service_id=request.service_id,
                staff_id=request.staff_id,
                start=request.start_time,
                customer=customer,
                idempotency_key=request.idempotency_key,
                now=self._clock.now(),
                secret=self._secret,
                hold_ttl=self._hold_ttl,
                business_slug=request.business_slug,
            )
        a = booked.appointment
        payment = None
        if a.status == "held" and self._deposits is not None:
            # After the hold committed: no lock is held while billing talks to Stripe. A failure leaves the
            # hold in place until it lapses, and a retry with the same idempotency key lands here again.
            intent = await self._deposits.authorize(a, f"Deposit for appointment {a.appointment_id}")
            payment = pb.DepositPayment(
                amount=_money(a),
                payment_intent_id=intent.payment_intent_id,
                client_secret=intent.client_secret,
                hold_expires_at=a.hold_expires_at,
            )
        return pb.BookAppointmentResponse(
            appointment=appointment(a),
            self_service_token=booked.self_service_token,
            replayed=booked.replayed,
            payment=payment,
        )

    async def cancel_appointment(
        self, request: pb.CancelAppointmentRequest, context: Context
    ) -> pb.CancelAppointmentResponse:
        bid, aid, by = self._customer_or_member(
            request.business_id, request.appointment_id, request.self_service_token
        )
        async with unit_of_work(self._pool) as conn:
            done = await service.cancel(conn, bid, aid, request.reason, by, self._clock.now())
        return pb.CancelAppointmentResponse(appointment=appointment(done))

    async def reschedule_appointment(
        self, request: pb.RescheduleAppointmentRequest, context: Context
    ) -> pb.RescheduleAppointmentResponse:
        bid, aid, _ = self._customer_or_member(
            request.business_id, request.appointment_id, request.self_service_token
        )
        async with unit_of_work(self._pool) as conn:
            done = await service.reschedule(
                conn, bid, aid, request.start_time, self._clock.now(), self._secret
            )
        return pb.RescheduleAppointmentResponse(appointment=appointment(done))

    async def confirm_appointment(
        self, request: pb.ConfirmAppointmentRequest, context: Context
    ) -> pb.ConfirmAppointmentResponse:
        bid, aid, _ = self._customer_or_member(
            request.business_id, request.appointment_id, request.self_service_token
        )
        async with unit_of_work(self._pool) as conn:
            done = await service.confirm(conn, bid, aid, self._clock.now())
        return pb.ConfirmAppointmentResponse(appointment=appointment(done))

    async def get_reminder_status(
        self, request: pb.GetReminderStatusRequest, context: Context
    ) -> pb.GetReminderStatusResponse:
        # The self-service token is the capability: the notification pipeline holds it from the reminder's
        # template data and acts for no user.
        bid, aid = tokens.verify(self._secret, request.self_service_token, self._clock.now())
        async with unit_of_work(self._pool) as conn:
            current, found = await service.reminder_status(conn, bid, aid, request.idempotency_key)
        return pb.GetReminderStatusResponse(current=current, appointment=appointment(found))

    async def complete_appointment(
        self, request: pb.CompleteAppointmentRequest, context: Context
    ) -> pb.CompleteAppointmentResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            done = await service.complete(conn, bid, request.appointment_id, self._clock.now())
        return pb.CompleteAppointmentResponse(appointment=appointment(done))

    async def mark_no_show(self, request: pb.MarkNoShowRequest, context: Context) -> pb.MarkNoShowResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            done = await service.mark_no_show(conn, bid, request.appointment_id, self._clock.now())
        return pb.MarkNoShowResponse(appointment=appointment(done))

    async def get_appointment(
        self, request: pb.GetAppointmentRequest, context: Context
    ) -> pb.GetAppointmentResponse:
        bid, aid, _ = self._customer_or_member(
            request.business_id, request.appointment_id, request.self_service_token
        )
        async with unit_of_work(self._pool) as conn:
            found = await service.get(conn, bid, aid)
        return pb.GetAppointmentResponse(appointment=appointment(found))

    async def list_appointments(
        self, request: pb.ListAppointmentsRequest, context: Context
    ) -> pb.ListAppointmentsResponse:
        bid = _member(request.business_id)
        async with unit_of_work(self._pool) as conn:
            page = await service.list_appointments(
                conn,
                bid,
                start=request.from_time,
                end=request.to_time,
                staff_id=request.staff_id,
                status=_STATUS_FROM_PB.get(int(request.status)),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return pb.ListAppointmentsResponse(
            appointments=[appointment(a) for a in page.items], next_page_token=page.next_page_token
        )
