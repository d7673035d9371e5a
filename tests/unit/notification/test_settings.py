"""Channel settings from the environment and the providers they build."""

from __future__ import annotations

import pytest

from apptremind_notification.channels.email import SmtpProvider
from apptremind_notification.channels.failover import FailoverProvider
from apptremind_notification.channels.settings import ChannelSettings, build_providers
from apptremind_notification.channels.sms import TwilioProvider, with_query


async def test_primaries_only_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("APPTREMIND_SMTP_PASSWORD", "s3cret")
    settings = ChannelSettings()
    assert settings.smtp.host == "mail.example.com"
    assert "s3cret" not in repr(settings)
    providers = build_providers(settings)
    assert isinstance(providers["email"], SmtpProvider)
    assert isinstance(providers["sms"], TwilioProvider)
    for provider in providers.values():
        await provider.aclose()


async def test_secondaries_wrap_in_failover(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SMTP2_HOST", "backup-mail.example.com")
    monkeypatch.setenv("APPTREMIND_SMS2_BASE_URL", "https://backup-sms.example.com")
    monkeypatch.setenv("APPTREMIND_FAILOVER_THRESHOLD", "5")
    settings = ChannelSettings()
    assert settings.failover_threshold == 5
    providers = build_providers(settings)
    email, sms = providers["email"], providers["sms"]
    assert isinstance(email, FailoverProvider) and isinstance(sms, FailoverProvider)
    assert (email.primary.name, email.secondary.name) == ("smtp", "smtp2")
    assert (sms.primary.name, sms.secondary.name) == ("sms", "sms2")
    for provider in providers.values():
        await provider.aclose()


def test_with_query_keeps_existing_parameters() -> None:
    assert (
        with_query("https://edge/hooks/sms/status", delivery="d1")
        == "https://edge/hooks/sms/status?delivery=d1"
    )
    assert (
        with_query("https://edge/hooks/sms/status?tenant=a&delivery=old", delivery="d 2")
        == "https://edge/hooks/sms/status?tenant=a&delivery=d+2"
    )
