"""Channel configuration from the environment and the providers built from it."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from apptremind_platform.clock import Clock

from .base import Provider
from .email import SmtpProvider
from .failover import FailoverProvider
from .sms import TwilioProvider


class SmtpSettings(BaseSettings):
    """``APPTREMIND_SMTP_*``: the primary SMTP server (the dev sink of `make up` by default)."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_SMTP_", extra="ignore")

    name: str = "smtp"
    host: str = "127.0.0.1"
    port: int = 2525
    starttls: bool = True
    username: str = ""
    password: SecretStr = SecretStr("")
    sender: str = "ApptRemind <no-reply@apptremind.localhost>"
    tls_verify: bool = True
    ca_file: str = ""
    timeout_s: float = 10.0
    max_connections: int = 4


class Smtp2Settings(SmtpSettings):
    """``APPTREMIND_SMTP2_*``: the secondary; unused while its host is empty."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_SMTP2_", extra="ignore")

    name: str = "smtp2"
    host: str = ""


class SmsSettings(BaseSettings):
    """``APPTREMIND_SMS_*``: the primary Twilio-compatible API (the dev SMS server by default)."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_SMS_", extra="ignore")

    name: str = "sms"
    base_url: str = "http://127.0.0.1:8090"
    account_sid: str = "ACapptremind0000000000000000000000"
    auth_token: SecretStr = SecretStr("apptremind-dev-token")
    sender: str = "+15005550006"
    # Where the provider posts delivery status (the edge's webhook); empty: no callbacks.
    status_callback_url: str = ""
    timeout_s: float = 10.0


class Sms2Settings(SmsSettings):
    """``APPTREMIND_SMS2_*``: the secondary; unused while its base URL is empty."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_SMS2_", extra="ignore")

    name: str = "sms2"
    base_url: str = ""


class ChannelSettings(BaseSettings):
    """All channels; ``APPTREMIND_FAILOVER_THRESHOLD`` / ``APPTREMIND_FAILOVER_COOLDOWN_S`` tune the breaker."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_", extra="ignore")

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    smtp2: Smtp2Settings = Field(default_factory=Smtp2Settings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    sms2: Sms2Settings = Field(default_factory=Sms2Settings)
    failover_threshold: int = 3
    failover_cooldown_s: float = 60.0


def build_providers(settings: ChannelSettings, *, clock: Clock | None = None) -> dict[str, Provider]:
    """``{"email": ..., "sms": ...}``, each wrapped in a FailoverProvider when a secondary is configured."""
    email: Provider = smtp_provider(settings.smtp)
    if settings.smtp2.host:
        email = FailoverProvider(
            email,
            smtp_provider(settings.smtp2),
            failure_threshold=settings.failover_threshold,
            cooldown_s=settings.failover_cooldown_s,
            clock=clock,
        )
    sms: Provider = sms_provider(settings.sms)
    if settings.sms2.base_url:
        sms = FailoverProvider(
            sms,
            sms_provider(settings.sms2),
            failure_threshold=settings.failover_threshold,
            cooldown_s=settings.failover_cooldown_s,
            clock=clock,
        )
    return {"email": email, "sms": sms}


def smtp_provider(settings: SmtpSettings) -> SmtpProvider:
    return SmtpProvider(
        settings.name,
        settings.host,
        settings.port,
        sender=settings.sender,
        starttls=settings.starttls,
        username=settings.username or None,
        password=settings.password.get_secret_value() or None,
        tls_verify=settings.tls_verify,
        ca_file=settings.ca_file or None,
        timeout=settings.timeout_s,
        max_connections=settings.max_connections,
    )


def sms_provider(settings: SmsSettings) -> TwilioProvider:
    return TwilioProvider(
        settings.name,
        settings.base_url,
        settings.account_sid,
        settings.auth_token.get_secret_value(),
        settings.sender,
        settings.status_callback_url or None,
        settings.timeout_s,
    )
