"""The auth-service's settings: the platform's ServiceSettings plus token lifetimes and the admin token.

Every field reads from `APPTREMIND_<FIELD>` (so `auth_admin_token` is `APPTREMIND_AUTH_ADMIN_TOKEN`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr

from apptremind_platform.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    # Short, because an access token cannot be revoked: a revoked membership or session lasts this long.
    auth_access_token_ttl_s: float = 15 * 60
    auth_refresh_token_ttl_s: float = 30 * 24 * 3600
    auth_invitation_ttl_s: float = 7 * 24 * 3600
    # Required by RotateSigningKey (metadata `x-apptremind-admin-token`); empty disables the RPC.
    auth_admin_token: SecretStr = SecretStr("")

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
