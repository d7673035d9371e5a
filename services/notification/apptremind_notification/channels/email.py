"""E-mail over SMTP (STARTTLS, AUTH), reusing a few open connections between sends."""

from __future__ import annotations

import asyncio
import ssl
from email.utils import parseaddr

import aiosmtplib

from .base import OutgoingMessage, ProviderError, SendResult
from .mime import build_email, valid_address


class SmtpProvider:
    """Sends ``OutgoingMessage(channel="email")`` through one SMTP server.

    A reply in the 4xx range, a dropped connection or a timeout is retryable; a 5xx reply (bad credentials,
    a refused sender or recipient) is not. The provider message id is the Message-ID header we set, built
    from the delivery reference, so a bounce or a support question can be traced to the delivery.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        sender: str,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        tls_verify: bool = True,
        ca_file: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._sender = sender
        self._sender_address = parseaddr(sender)[1]
        if "@" not in self._sender_address:
            raise ValueError(f"sender {sender!r} has no e-mail address")
        self._starttls = starttls
        self._username = username or None
        self._password = password if username else None
        self._tls_context = _tls_context(tls_verify, ca_file) if starttls else None
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[aiosmtplib.SMTP] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.channel != "email":
            raise ProviderError(
                f"cannot send {message.channel} by e-mail", retryable=False, provider=self.name
            )
        data, message_id = self._build(message)
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                if client is not None:
                    try:
                        await self._send_on(client, data, message.recipient)
                    except aiosmtplib.SMTPServerDisconnected:
                        # The server closed an idle connection in the meantime; that says nothing about
                        # this message, so try once more on a fresh connection.
                        client.close()
                        client = None
                if client is None:
                    client = await self._connect()
                    await self._send_on(client, data, message.recipient)
            except Exception as exc:
                if client is not None:
                    client.close()
                raise self._error(exc) from exc
            except BaseException:
                # Cancelled mid-conversation: the connection's state is unknown, so it is not reused.
                if client is not None:
                    client.close()
                raise
            self._idle.append(client)
        return SendResult(provider=self.name, provider_message_id=message_id)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            start_tls=self._starttls,
            tls_context=self._tls_context,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
        )
        await client.connect()
        return client

    async def _send_on(self, client: aiosmtplib.SMTP, data: bytes, recipient: str) -> None:
        refused, _ = await client.sendmail(self._sender_address, [recipient], data)
        if refused:
            # Only one recipient, so a partial refusal cannot happen; kept as a guard for server quirks.
            code, text = next(iter(refused.values()))
            raise aiosmtplib.SMTPResponseException(code, text)

    def _build(self, message: OutgoingMessage) -> tuple[bytes, str]:
        if not valid_address(message.recipient):
            raise ProviderError(
                f"invalid recipient address {message.recipient!r}", retryable=False, provider=self.name
            )
        domain = self._sender_address.rpartition("@")[2]
        message_id = f"<{message.reference}@{domain}>"
        return build_email(message, sender=self._sender, message_id=message_id), message_id

    def _error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            # RFC 5321 §4.2.1: 4yz is a transient failure, 5yz a permanent one.
            retryable = 400 <= exc.code < 500
            return ProviderError(f"SMTP {exc.code} {exc.message}", retryable=retryable, provider=self.name)
        # aiosmtplib reports a server without STARTTLS as a bare SMTPException; only its text tells.
        no_starttls = type(exc) is aiosmtplib.SMTPException and "STARTTLS" in str(exc)
        if no_starttls or isinstance(exc, ssl.SSLCertVerificationError | aiosmtplib.SMTPNotSupported):
            # A certificate or capability mismatch is configuration; retrying will not fix it.
            return ProviderError(f"SMTP setup: {exc}", retryable=False, provider=self.name)
        if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError | ssl.SSLError):
            return ProviderError(f"SMTP connection: {exc}", retryable=True, provider=self.name)
        raise exc


def _tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)
