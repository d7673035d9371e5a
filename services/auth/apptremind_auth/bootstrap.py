"""Wires the auth-service process: its servicer, its migrations and its consumers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service
from apptremind_platform.settings import ServiceSettings

from .grpc import SERVICE, AuthServiceServicer


def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
    return [(AuthServiceServicer(), SERVICE)]


SPEC = service.ServiceSpec(name="auth", servicers=servicers, sql_dir=Path(__file__).parent / "sql")


def main() -> None:
    service.main(SPEC)


if __name__ == "__main__":
    main()
