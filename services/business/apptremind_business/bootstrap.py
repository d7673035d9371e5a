"""Wires the business-service process: its servicer, its migrations and its signup-saga consumer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import events, service
from .grpc import SERVICE, BusinessServiceServicer


def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
    return [(BusinessServiceServicer(pool), SERVICE)]


def signup_processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
    """Consumes auth.user.created.v1 and creates the signed-up owner's business (the signup saga)."""
    return events.signup_processor(pool, service.create_business_for_signup)


SPEC = platform_service.ServiceSpec(
    name="business",
    servicers=servicers,
    sql_dir=Path(__file__).parent / "sql",
    processors=(signup_processor,),
)


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
