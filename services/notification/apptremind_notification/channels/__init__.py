"""Delivery channels: e-mail over SMTP, SMS over a Twilio-compatible API, failover between two providers
of a channel, template rendering and calendar invitations."""

from .base import Attachment, OutgoingMessage, Provider, ProviderError, SendResult
from .calendar import calendar_invite, invite_attachment
from .email import SmtpProvider
from .failover import FailoverProvider
from .rendering import DEFAULT_TEMPLATES, Rendered, TemplateError, default_template, render
from .settings import ChannelSettings, build_providers
from .sms import TwilioProvider

__all__ = [
    "DEFAULT_TEMPLATES",
    "Attachment",
    "ChannelSettings",
    "FailoverProvider",
    "OutgoingMessage",
    "Provider",
    "ProviderError",
    "Rendered",
    "SendResult",
    "SmtpProvider",
    "TemplateError",
    "TwilioProvider",
    "build_providers",
    "calendar_invite",
    "default_template",
    "invite_attachment",
    "render",
]
