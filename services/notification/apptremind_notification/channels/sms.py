"""SMS over a Twilio-compatible Messages API (Twilio itself, or the local SMS server in tests and `make up`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from .base import OutgoingMessage, ProviderError, SendResult

API_VERSION = "2010-04-01"


class TwilioProvider:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` with HTTP Basic auth.

    The delivery reference rides on the StatusCallback URL (``?delivery=<reference>``) so a status callback
    finds its delivery without a lookup by provider id. 4xx answers are permanent (an invalid number,
    bad credentials) except 429; 5xx, timeouts and connection errors are retryable. A timeout after the
    request reached the provider may still have sent the SMS: Twilio has no idempotency key, so that retry
    can duplicate it.
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
        # Waiting for a free connection is not bounded by ``timeout``: sends beyond ``max_connections`` queue
        # (backpressure) instead of failing while the provider itself is healthy.
        self._client = httpx.AsyncClient(
            auth=(account_sid, auth_token),
            timeout=httpx.Timeout(timeout, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.channel != "sms":
            raise ProviderError(f"cannot send {message.channel} by SMS", retryable=False, provider=self.name)
        form = {"To": message.recipient, "Body": message.text}
        # A Messaging Service SID (MG...) lets Twilio pick the sending number from a pool.
        form["MessagingServiceSid" if self._sender.startswith("MG") else "From"] = self._sender
        if self._status_callback_url:
            form["StatusCallback"] = with_query(self._status_callback_url, delivery=message.reference)
        try:
            response = await self._client.post(self._url, data=form)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"timeout: {exc!r}", retryable=True, provider=self.name) from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"connection: {exc!r}", retryable=True, provider=self.name) from exc
        if response.status_code in (200, 201):
            sid = _json(response).get("sid")
            if not isinstance(sid, str) or not sid:
                raise ProviderError("answer without a message sid", retryable=True, provider=self.name)
            return SendResult(provider=self.name, provider_message_id=sid)
        body = _json(response)
        reason = f"HTTP {response.status_code}"
        if "code" in body:
            reason += f" code {body['code']}"
        if "message" in body:
            reason += f": {body['message']}"
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise ProviderError(reason, retryable=retryable, provider=self.name)

    async def aclose(self) -> None:
        await self._client.aclose()


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing keys in) its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
