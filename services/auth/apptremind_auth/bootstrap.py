"""Wires the auth-service process: its servicer, its migrations, its saga consumer and its own JWKS.

`build_spec` is the one place that builds the object graph; the process uses `SPEC`, tests call
`build_spec(clock=SettableClock(...), auth_admin_token=...)` to get the same graph with a test clock and
settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service
from apptremind_platform.access_tokens import JwksSource
from apptremind_platform.clock import Clock, SystemClock
from apptremind_platform.db import unit_of_work
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from .events import saga_processor
from .grpc import SERVICE, AuthServiceServicer
from .keys import KeyRing
from .passwords import Passwords
from .service import AuthService, Lifetimes
from .settings import AuthSettings

SQL_DIR = Path(__file__).parent / "sql"


def build_service(settings: AuthSettings, clock: Clock) -> AuthService:
    return AuthService(
        clock=clock,
        passwords=Passwords(),
        # A retired key stays published as long as the longest-lived token it may have signed.
        keys=KeyRing(max(settings.access_token_ttl, settings.service_token_ttl)),
        lifetimes=Lifetimes(
            settings.access_token_ttl,
            settings.refresh_token_ttl,
            settings.invitation_ttl,
            settings.service_token_ttl,
        ),
        admin_token=settings.auth_admin_token.get_secret_value(),
        service_clients=settings.service_clients,
    )


def build_spec(clock: Clock | None = None, **overrides: Any) -> service.ServiceSpec:
    """The service description; `overrides` set AuthSettings fields over the environment's."""
    the_clock: Clock = clock or SystemClock()

    def auth_service(settings: ServiceSettings) -> AuthService:
        return build_service(AuthSettings.from_service(settings, **overrides), the_clock)

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        return [(AuthServiceServicer(pool, auth_service(settings)), SERVICE)]

    def processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
        return saga_processor(pool, auth_service(settings))

    def jwks(pool: AsyncConnectionPool, settings: ServiceSettings) -> JwksSource:
        # The auth-service verifies access tokens with the keys in its own database, not over gRPC to itself.
        keys = auth_service(settings)

        async def fetch() -> str:
            async with unit_of_work(pool) as conn:
                return await keys.jwks(conn)

        return fetch

    return service.ServiceSpec(
        name="auth", servicers=servicers, sql_dir=SQL_DIR, processors=(processor,), jwks=jwks
    )


SPEC = build_spec()


def main() -> None:
    service.main(SPEC)


if __name__ == "__main__":
    main()
