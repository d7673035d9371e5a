"""The provider contract every delivery channel implements: one outgoing message in, a provider id out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    channel: Literal["email", "sms"]
    recipient: str
    """An e-mail address or an E.164 number."""
    text: str
    """The SMS body, or the e-mail's plain-text part."""
    reference: str
    """Our delivery id: it goes into the Message-ID header / the Twilio StatusCallback ``?delivery=`` param."""
    subject: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    provider_message_id: str


class ProviderError(Exception):
    """A send that did not go through.

    ``retryable`` tells the pipeline whether trying again later can succeed (a 4xx SMTP reply, a 5xx HTTP
    answer, a dropped connection) or never will (bad credentials, a refused recipient, an invalid number).
    """

    def __init__(self, reason: str, *, retryable: bool, provider: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.reason = reason
        self.retryable = retryable
        self.provider = provider

    def __reduce__(self) -> tuple[object, ...]:
        # The default reduce passes only the message; keyword-only fields need their own.
        return (_provider_error, (self.reason, self.retryable, self.provider))


def _provider_error(reason: str, retryable: bool, provider: str) -> ProviderError:
    return ProviderError(reason, retryable=retryable, provider=provider)


class Provider(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def aclose(self) -> None: ...
