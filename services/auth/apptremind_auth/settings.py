"""The auth-service's settings: the platform's ServiceSettings plus token lifetimes, the admin token and the
service clients allowed to ask for service tokens.

Every field reads from `APPTREMIND_<FIELD>` (so `auth_admin_token` is `APPTREMIND_AUTH_ADMIN_TOKEN`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr, field_validator

from apptremind_platform.settings import ServiceSettings

from .model import ServiceClients, parse_service_clients


class AuthSettings(ServiceSettings):
    # Short, because an access token cannot be revoked: a revoked membership or session lasts this long.
    auth_access_token_ttl_s: float = 15 * 60
    auth_refresh_token_ttl_s: float = 30 * 24 * 3600
    auth_invitation_ttl_s: float = 7 * 24 * 3600
    # Required by RotateSigningKey (metadata `x-apptremind-admin-token`); empty disables the RPC.
    auth_admin_token: SecretStr = SecretStr("")
    # Services that may call IssueServiceToken (ADR 0013): `<name>:<sha256 hex of its secret>`, comma
    # separated; `|` between two hashes of one client while its secret is rotated. Only hashes live here.
    auth_service_clients: str = ""
    auth_service_token_ttl_s: float = 15 * 60

    @field_validator("auth_service_clients")
    @classmethod
    def _valid_clients(cls, value: str) -> str:
        parse_service_clients(value)
        return value

    @classmethod
    def from_service(cls, settings: ServiceSettings, **overrides: Any) -> AuthSettings:
        """The platform builds plain ServiceSettings; the auth fields come from the environment (or overrides)."""
        if isinstance(settings, cls) and not overrides:
            return settings
        return cls(**{**settings.model_dump(), **overrides})

    @property
    def access_token_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.auth_access_token_ttl_s)

    @property
    def refresh_token_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.auth_refresh_token_ttl_s)

    @property
    def invitation_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.auth_invitation_ttl_s)

    @property
    def service_token_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.auth_service_token_ttl_s)

    @property
    def service_clients(self) -> ServiceClients:
        return parse_service_clients(self.auth_service_clients)
