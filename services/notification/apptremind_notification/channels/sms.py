"""SMS over a Twilio-compatible Messages API (Twilio itself, or the local SMS server in tests and `make up`)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import urllib.request
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import certifi
from yarl import URL

from .base import OutgoingMessage, ProviderError, SendResult

API_VERSION = "2010-04-01"


class TwilioProvider:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` with HTTP Basic auth.

    The delivery reference rides on the StatusCallback URL (``?delivery=<reference>``) so a status callback
    finds its delivery without a lookup by provider id. 4xx answers are permanent (an invalid number,
    bad credentials) except 429; 5xx, timeouts and connection errors are retryable. A timeout after the
    request reached the provider may still have sent the SMS: Twilio has no idempotency key, so that retry
    can duplicate it.

    Requests go through an aiohttp session (C HTTP parser: a third to a tenth of httpx's CPU per SMS). The
    session is bound to the running event loop, so it is created on the first send: a provider can be built
    before the loop runs.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        status_callback_url: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 16,
    ) -> None:
        self.name = name
        self._url = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self._sender = sender
        self._status_callback_url = status_callback_url or None
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {credentials}"}
        # Waiting for a free connection is not bounded by ``timeout``: sends beyond ``max_connections`` queue
        # on ``_slots`` (backpressure) instead of failing while the provider itself is healthy. A send holding
        # a slot always finds the pool below its limit, so ``connect`` bounds only resolving, connecting and
        # the TLS handshake; ``sock_read`` bounds each wait for the answer.
        self._slots = asyncio.Semaphore(max_connections)
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.channel != "sms":
            raise ProviderError(f"cannot send {message.channel} by SMS", retryable=False, provider=self.name)
        form = {"To": message.recipient, "Body": message.text}
        # A Messaging Service SID (MG...) lets Twilio pick the sending number from a pool.
        form["MessagingServiceSid" if self._sender.startswith("MG") else "From"] = self._sender
        if self._status_callback_url:
            form["StatusCallback"] = with_query(self._status_callback_url, delivery=message.reference)
        session = self._session or self._open()
        try:
            async with self._slots, session.post(self._url, data=form, allow_redirects=False) as response:
                status = response.status
                content = await response.read()
        except TimeoutError as exc:
            raise ProviderError(f"timeout: {exc!r}", retryable=True, provider=self.name) from exc
        except aiohttp.ClientError as exc:
            raise ProviderError(f"connection: {exc!r}", retryable=True, provider=self.name) from exc
        if status in (200, 201):
            sid = _json(content).get("sid")
            if not isinstance(sid, str) or not sid:
                raise ProviderError("answer without a message sid", retryable=True, provider=self.name)
            return SendResult(provider=self.name, provider_message_id=sid)
        body = _json(content)
        reason = f"HTTP {status}"
        if "code" in body:
            reason += f" code {body['code']}"
        if "message" in body:
            reason += f": {body['message']}"
        retryable = status >= 500 or status in (408, 429)
        raise ProviderError(reason, retryable=retryable, provider=self.name)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"{self.name}: the provider is closed")
        proxy = _env_proxy(self._url)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=5.0,
                ssl=_ssl_context() if self._url.startswith("https:") else True,
            ),
            headers=self._headers,
            timeout=self._timeout,
            proxy=proxy,
            proxy_auth=aiohttp.BasicAuth.from_url(URL(proxy)) if proxy else None,
        )
        return self._session


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing keys in) its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _json(content: bytes) -> dict[str, object]:
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _ssl_context() -> ssl.SSLContext:
    """The CAs httpx verified against: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` if set, else certifi's bundle."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def _env_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts its host, read once per session
    (aiohttp's own ``trust_env`` reads them in a worker thread on every request)."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy: str | None = urllib.request.getproxies().get(parts.scheme)
    return proxy or None
