"""booking's deposit client when the auth-service cannot give it a service token: the booking answers
UNAVAILABLE payments_unavailable (the hold stays; a retry with the same key asks again), not INTERNAL."""

from __future__ import annotations

import dataclasses

import pytest

from apptremind_booking.deposits import GrpcDeposits
from apptremind_platform.errors import Unavailable
from apptremind_platform.grpc_bridge import open_channel
from apptremind_platform.service_credentials import ServiceCredentialsUnavailable
from tests.unit.booking.test_deposit_policy import APPOINTMENT


async def no_token() -> str:
    raise ServiceCredentialsUnavailable("auth-service: UNAVAILABLE")


async def test_no_service_token_is_payments_unavailable() -> None:
    held = dataclasses.replace(APPOINTMENT, status="held")
    async with open_channel("127.0.0.1:1") as channel:
        with pytest.raises(Unavailable) as info:
            await GrpcDeposits(channel, no_token, timeout_s=1).authorize(held, "Deposit")
    assert info.value.reason == "payments_unavailable"
