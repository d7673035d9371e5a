"""Booking operations: public availability and booking (with an Idempotency-Key), the customer's
self-service cancel/reschedule by token, and the business's day view and lifecycle (booking-service)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import strawberry

from apptremind_gen.apptremind.booking import v1 as booking
from apptremind_gen.apptremind.common.v1 import Money as Money_

from .context import EdgeContext
from .errors import BAD_USER_INPUT, NOT_FOUND, edge_error
from .types import PageInfo
from .wire import decode_availability

Info = strawberry.Info[EdgeContext, None]
IDEMPOTENCY_KEY_HEADER = "idempotency-key"


@strawberry.enum
class AppointmentStatus(enum.Enum):
    BOOKED = "BOOKED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    NO_SHOW = "NO_SHOW"
    # Reserved while the deposit is being paid.
    HELD = "HELD"
    # A hold that ended unpaid (declined or lapsed); the slot is free again.
    RELEASED = "RELEASED"


STATUS_FROM_PROTO = {
    booking.AppointmentStatus.BOOKED: AppointmentStatus.BOOKED,
    booking.AppointmentStatus.CANCELLED: AppointmentStatus.CANCELLED,
    booking.AppointmentStatus.COMPLETED: AppointmentStatus.COMPLETED,
    booking.AppointmentStatus.NO_SHOW: AppointmentStatus.NO_SHOW,
    booking.AppointmentStatus.HELD: AppointmentStatus.HELD,
    booking.AppointmentStatus.RELEASED: AppointmentStatus.RELEASED,
}
STATUS_TO_PROTO = {v: k for k, v in STATUS_FROM_PROTO.items()}


@strawberry.type
class Slot:
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    staff_id: strawberry.ID
    local_start: str


@strawberry.type
class Customer:
    name: str
    email: str
    phone: str
    time_zone: str


@strawberry.type
class Appointment:
    id: strawberry.ID
    business_id: strawberry.ID
    staff_id: strawberry.ID
    service_id: strawberry.ID
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    status: AppointmentStatus
    customer: Customer | None
    confirmed_at: dt.datetime | None = None
    deposit: Money | None = None
    hold_expires_at: dt.datetime | None = None

    @classmethod
    def of(cls, a: booking.Appointment | None) -> Appointment:
        assert a is not None
        c = a.customer
        return cls(
            id=strawberry.ID(a.appointment_id),
            business_id=strawberry.ID(a.business_id),
            staff_id=strawberry.ID(a.staff_id),
            service_id=strawberry.ID(a.service_id),
            start_time=a.start_time,
            end_time=a.end_time,
            status=STATUS_FROM_PROTO[a.status],
            customer=Customer(name=c.name, email=c.email, phone=c.phone, time_zone=c.time_zone)
            if c
            else None,
            confirmed_at=a.confirmed_at,
            deposit=Money.of(a.deposit),
            hold_expires_at=a.hold_expires_at,
        )


@strawberry.type
class Money:
    amount_minor: int
    currency: str

    @classmethod
    def of(cls, m: Money_ | None) -> Money | None:
        return cls(amount_minor=m.amount_minor, currency=m.currency) if m is not None else None


@strawberry.type
class DepositPayment:
    """What the client confirms with Stripe.js (stripe.confirmPayment with the client secret); the
    appointment turns BOOKED when Stripe reports the card authorised, or RELEASED on a decline or at
    holdExpiresAt."""

    amount: Money | None
    payment_intent_id: str
    client_secret: str
    hold_expires_at: dt.datetime | None


@strawberry.type
class AppointmentConnection:
    nodes: list[Appointment]
    page_info: PageInfo


@strawberry.type
class BookingPayload:
    appointment: Appointment
    self_service_token: str
    replayed: bool
    # Set when the service takes a deposit: the appointment is HELD until it is paid.
    payment: DepositPayment | None = None


@strawberry.input
class CustomerInput:
    name: str
    email: str = ""
    phone: str = ""
    time_zone: str = "UTC"
    locale: str = "en"


@strawberry.input
class BookAppointmentInput:
    business_slug: str
    service_id: strawberry.ID
    staff_id: strawberry.ID | None = None
    start_time: dt.datetime
    customer: CustomerInput


def public_slug(slug: str) -> str:
    """The slug as services match it (trimmed, lower case). Empty is unknown, answered here as
    booking-service answers any unknown slug; unset, it would read as "no slug given"."""
    normalized = slug.strip().lower()
    if not normalized:
        raise edge_error("no such business", NOT_FOUND, reason="business_not_found")
    return normalized


def idempotency_key(info: Info) -> str:
    key = info.context.request.headers.get(IDEMPOTENCY_KEY_HEADER, "").strip()
    if not key or len(key) > 200:
        raise edge_error(
            "bookAppointment needs an Idempotency-Key header (1 to 200 characters)",
            BAD_USER_INPUT,
            reason="idempotency_key_required",
        )
    return key


@strawberry.type
class BookingQuery:
    @strawberry.field
    async def availability(
        self,
        info: Info,
        business_slug: str,
        service_id: strawberry.ID,
        from_: Annotated[dt.datetime, strawberry.argument(name="from")],
        to: dt.datetime,
        time_zone: str,
        staff_id: strawberry.ID | None = None,
    ) -> list[Slot]:
        info.context.limits.public_per_ip.check(info.context.client_ip, "availability")
        slug = public_slug(business_slug)
        # booking-service resolves the slug from its read model: one service call, not two.
        slots = await info.context.call_decoded(
            "booking",
            "GetAvailability",
            booking.GetAvailabilityRequest(
                business_slug=slug,
                service_id=service_id,
                staff_id=staff_id or "",
                from_time=from_,
                to_time=to,
                time_zone=time_zone,
            ),
            decode_availability,
        )
        return [
            Slot(start_time=start, end_time=end, staff_id=strawberry.ID(staff), local_start=local)
            for start, end, staff, local in slots
        ]

    @strawberry.field
    async def my_appointment(self, info: Info, token: str) -> Appointment:
        """The customer's own appointment, by the self-service token from the booking."""
        info.context.limits.public_per_ip.check(info.context.client_ip, "appointment")
        response = await info.context.call(
            "booking",
            "GetAppointment",
            booking.GetAppointmentRequest(self_service_token=token),
            booking.GetAppointmentResponse,
        )
        return Appointment.of(response.appointment)

    @strawberry.field
    async def appointments(
        self,
        info: Info,
        business_id: strawberry.ID,
        from_: Annotated[dt.datetime, strawberry.argument(name="from")],
        to: dt.datetime,
        staff_id: strawberry.ID | None = None,
        status: AppointmentStatus | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AppointmentConnection:
        await info.context.require_caller()
        response = await info.context.call(
            "booking",
            "ListAppointments",
            booking.ListAppointmentsRequest(
                business_id=business_id,
                from_time=from_,
                to_time=to,
                staff_id=staff_id or "",
                status=STATUS_TO_PROTO[status] if status else booking.AppointmentStatus.UNSPECIFIED,
                page_size=first,
                page_token=after or "",
            ),
            booking.ListAppointmentsResponse,
        )
        return AppointmentConnection(
            nodes=[Appointment.of(a) for a in response.appointments],
            page_info=PageInfo.after(response.next_page_token),
        )


@strawberry.type
class BookingMutation:
    @strawberry.mutation
    async def book_appointment(self, info: Info, input: BookAppointmentInput) -> BookingPayload:
        key = idempotency_key(info)
        info.context.limits.public_per_ip.check(info.context.client_ip, "booking")
        # Slugs are unique and never change, so the slug names the business for the per-business limit
        # as well as its id would, and the limit still applies before any service is called.
        slug = public_slug(input.business_slug)
        info.context.limits.bookings_per_business.check(slug, "booking")
        c = input.customer
        response = await info.context.call(
            "booking",
            "BookAppointment",
            booking.BookAppointmentRequest(
                business_slug=slug,
                service_id=input.service_id,
                staff_id=input.staff_id or "",
                start_time=input.start_time,
                customer=booking.Customer(
                    name=c.name, email=c.email, phone=c.phone, time_zone=c.time_zone, locale=c.locale
                ),
                idempotency_key=key,
            ),
            booking.BookAppointmentResponse,
        )
        p = response.payment
        return BookingPayload(
            appointment=Appointment.of(response.appointment),
            self_service_token=response.self_service_token,
            replayed=response.replayed,
            payment=DepositPayment(
                amount=Money.of(p.amount),
                payment_intent_id=p.payment_intent_id,
                client_secret=p.client_secret,
                hold_expires_at=p.hold_expires_at,
            )
            if p is not None
            else None,
        )

    @strawberry.mutation
    async def cancel_appointment(
        self,
        info: Info,
        token: str | None = None,
        business_id: strawberry.ID | None = None,
        appointment_id: strawberry.ID | None = None,
        reason: str = "",
    ) -> Appointment:
        """By the customer with the self-service token from the booking, or by a member with ids."""
        response = await info.context.call(
            "booking",
            "CancelAppointment",
            booking.CancelAppointmentRequest(
                business_id=business_id or "",
                appointment_id=appointment_id or "",
                reason=reason,
                self_service_token=token or "",
            ),
            booking.CancelAppointmentResponse,
        )
        return Appointment.of(response.appointment)

    @strawberry.mutation
    async def reschedule_appointment(
        self,
        info: Info,
        start: dt.datetime,
        token: str | None = None,
        business_id: strawberry.ID | None = None,
        appointment_id: strawberry.ID | None = None,
    ) -> Appointment:
        response = await info.context.call(
            "booking",
            "RescheduleAppointment",
            booking.RescheduleAppointmentRequest(
                business_id=business_id or "",
                appointment_id=appointment_id or "",
                start_time=start,
                self_service_token=token or "",
            ),
            booking.RescheduleAppointmentResponse,
        )
        return Appointment.of(response.appointment)

    @strawberry.mutation
    async def confirm_appointment(
        self,
        info: Info,
        token: str | None = None,
        business_id: strawberry.ID | None = None,
        appointment_id: strawberry.ID | None = None,
    ) -> Appointment:
        """The customer confirms they will come (the link in a reminder), or a member records it for them."""
        response = await info.context.call(
            "booking",
            "ConfirmAppointment",
            booking.ConfirmAppointmentRequest(
                business_id=business_id or "",
                appointment_id=appointment_id or "",
                self_service_token=token or "",
            ),
            booking.ConfirmAppointmentResponse,
        )
        return Appointment.of(response.appointment)

    @strawberry.mutation
    async def complete_appointment(
        self, info: Info, business_id: strawberry.ID, appointment_id: strawberry.ID
    ) -> Appointment:
        await info.context.require_caller()
        response = await info.context.call(
            "booking",
            "CompleteAppointment",
            booking.CompleteAppointmentRequest(business_id=business_id, appointment_id=appointment_id),
            booking.CompleteAppointmentResponse,
        )
        return Appointment.of(response.appointment)

    @strawberry.mutation
    async def mark_no_show(
        self, info: Info, business_id: strawberry.ID, appointment_id: strawberry.ID
    ) -> Appointment:
        await info.context.require_caller()
        response = await info.context.call(
            "booking",
            "MarkNoShow",
            booking.MarkNoShowRequest(business_id=business_id, appointment_id=appointment_id),
            booking.MarkNoShowResponse,
        )
        return Appointment.of(response.appointment)
