"""The business-service's settings: the platform's plus where billing-service is (the staff-seat limit)."""

from __future__ import annotations

from pydantic import Field

from apptremind_platform.settings import ServiceSettings


class BusinessSettings(ServiceSettings):
    service_name: str = "business"
    # billing-service (APPTREMIND_BILLING_TARGET): CheckEntitlement staff_seats before every new staff member.
    billing_target: str = "127.0.0.1:50054"
    billing_timeout_s: float = Field(default=3.0, gt=0)
    # Off only for test harnesses that run business-service without billing-service
    # (APPTREMIND_BILLING_SEAT_CHECK=false); a deployment never turns it off.
    billing_seat_check: bool = True
