"""TwilioProvider against a small in-process HTTP server: request shape, error mapping, timeouts, the pool."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from apptremind_devstack.ports import free_port
from apptremind_notification.channels.base import OutgoingMessage, ProviderError
from apptremind_notification.channels.sms import TwilioProvider

SID = "ACtest0000000000000000000000000000"
TOKEN = "tok:en"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Api:
    url: str
    requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    """(headers, form) of every request."""
    peers: set[int] = field(default_factory=set)
    """Client ports seen: one per connection."""
    in_flight: int = 0
    max_in_flight: int = 0


def created(sid: str = "SM123") -> web.Response:
    return web.json_response({"sid": sid, "status": "queued"}, status=201)


async def accept(_: web.Request) -> web.StreamResponse:
    return created()


@asynccontextmanager
async def api(handler: Handler = accept) -> AsyncIterator[Api]:
    state = Api(url="")

    async def messages(request: web.Request) -> web.StreamResponse:
        state.requests.append((dict(request.headers), {k: str(v) for k, v in (await request.post()).items()}))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state.peers.add(peer[1])
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await handler(request)
        finally:
            state.in_flight -= 1

    app = web.Application()
    app.router.add_post(PATH, messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def provider(
    url: str,
    sender: str = "+15005550006",
    *,
    status_callback_url: str | None = None,
    timeout: float = 10.0,
    max_connections: int = 16,
) -> TwilioProvider:
    return TwilioProvider("twilio", url, SID, TOKEN, sender, status_callback_url, timeout, max_connections)


async def send_failing(url: str, timeout_s: float = 10.0) -> ProviderError:
    """Sends one SMS that must fail and returns the provider's error."""
    p = provider(url, timeout=timeout_s)
    try:
        with pytest.raises(ProviderError) as caught:
            await p.send(sms())
    finally:
        await p.aclose()
    return caught.value


def sms(reference: str = "d-1") -> OutgoingMessage:
    return OutgoingMessage(
        channel="sms", recipient="+4915112345678", text="Bis morgen 14:30", reference=reference
    )


def test_construction_needs_no_event_loop() -> None:
    p = provider("http://127.0.0.1:1")  # as build_providers does before the loop runs

    async def use() -> str:
        async with api() as server:
            p._url = p._url.replace("http://127.0.0.1:1", server.url)
            try:
                return (await p.send(sms())).provider_message_id
            finally:
                await p.aclose()

    assert asyncio.run(use()) == "SM123"


async def test_basic_auth_form_and_status_callback() -> None:
    async with api() as server:
        p = provider(server.url, status_callback_url="https://edge.example/hooks/sms/status?tenant=a")
        try:
            result = await p.send(sms("d 7"))
        finally:
            await p.aclose()
    assert (result.provider, result.provider_message_id) == ("twilio", "SM123")
    [(headers, form)] = server.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form == {
        "To": "+4915112345678",
        "Body": "Bis morgen 14:30",
        "From": "+15005550006",
        "StatusCallback": "https://edge.example/hooks/sms/status?tenant=a&delivery=d+7",
    }


async def test_messaging_service_sender() -> None:
    async with api() as server:
        p = provider(server.url, sender="MG0123456789abcdef")
        try:
            await p.send(sms())
        finally:
            await p.aclose()
    [(_, form)] = server.requests
    assert form["MessagingServiceSid"] == "MG0123456789abcdef"
    assert "From" not in form and "StatusCallback" not in form


def answer(status: int, body: object) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    return handler


@pytest.mark.parametrize(
    ("status", "body", "retryable", "reason"),
    [
        (201, {"status": "queued"}, True, "answer without a message sid"),
        (200, {"sid": ""}, True, "answer without a message sid"),
        (201, "not json", True, "answer without a message sid"),
        (
            400,
            {"code": 21211, "message": "Invalid 'To' Phone Number"},
            False,
            "HTTP 400 code 21211: Invalid 'To' Phone Number",
        ),
        (401, {"code": 20003, "message": "Authenticate"}, False, "HTTP 401 code 20003: Authenticate"),
        (404, "no such page", False, "HTTP 404"),
        (408, {}, True, "HTTP 408"),
        (
            429,
            {"code": 20429, "message": "Too Many Requests"},
            True,
            "HTTP 429 code 20429: Too Many Requests",
        ),
        (500, ["not", "an", "object"], True, "HTTP 500"),
        (503, {"message": "Service Unavailable"}, True, "HTTP 503: Service Unavailable"),
    ],
)
async def test_error_mapping(status: int, body: object, retryable: bool, reason: str) -> None:
    async with api(answer(status, body)) as server:
        error = await send_failing(server.url)
    assert (error.reason, error.retryable, error.provider) == (
        reason,
        retryable,
        "twilio",
    )


async def test_redirects_are_not_followed() -> None:
    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    async with api(redirect) as server:
        error = await send_failing(server.url)
    assert (error.reason, error.retryable) == ("HTTP 302", False)
    assert len(server.requests) == 1


async def test_slow_answer_is_a_retryable_timeout() -> None:
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return created()

    async with api(slow) as server:
        error = await send_failing(server.url, timeout_s=0.2)
    assert error.retryable and error.reason.startswith("timeout: ")


async def test_refused_connection_is_retryable() -> None:
    error = await send_failing(f"http://127.0.0.1:{free_port()}")
    assert error.retryable and error.reason.startswith("connection: ")


async def test_waiting_for_a_connection_is_not_bounded_by_the_timeout() -> None:
    async def busy(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.4)
        return created()

    async with api(busy) as server:
        # 8 sends over 2 connections take 4 x 0.4 s: the last two wait 1.2 s for a connection, longer than
        # the timeout, and must wait, not fail. A loaded machine only lengthens that wait; a send itself
        # has 0.5 s to spare.
        p = provider(server.url, timeout=0.9, max_connections=2)
        try:
            results = await asyncio.gather(*(p.send(sms(f"d-{i}")) for i in range(8)))
        finally:
            await p.aclose()
    assert len(results) == 8
    assert server.max_in_flight == 2
    assert len(server.peers) == 2  # kept alive and reused


async def test_non_sms_is_permanent_and_aclose_is_final() -> None:
    async with api() as server:
        p = provider(server.url)
        with pytest.raises(ProviderError) as caught:
            await p.send(OutgoingMessage(channel="email", recipient="a@example.com", text="x", reference="d"))
        assert not caught.value.retryable
        await p.send(sms())
        session = p._session
        await p.aclose()
        assert session is not None and session.closed
        with pytest.raises(RuntimeError):
            await p.send(sms())
    await provider("http://127.0.0.1:1").aclose()  # never used: nothing to close
