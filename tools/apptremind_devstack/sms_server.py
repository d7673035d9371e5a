"""A local HTTP server that speaks the Twilio Messages API, for tests and `make up`.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (HTTP Basic ``sid:auth_token``; form fields To,
From or MessagingServiceSid, Body, StatusCallback) answers 201 with Twilio's message JSON, 400 with Twilio's
error JSON for an invalid number or a missing body, 401 for bad credentials, and 503 for a share
``fail_ratio`` of requests (seeded, repeatable). After a 201 it posts the status callbacks ``sent`` then
``delivered`` to StatusCallback, signed with ``X-Twilio-Signature`` as Twilio signs them.
``inject_inbound`` posts an inbound-SMS webhook (a customer's reply) the same way.

In-process: ``SmsServer().start()`` (own thread and event loop); as a process:
``python -m apptremind_devstack.sms_server --port 8090``, which also accepts
``POST /_dev/inbound`` (form From, To, Body, Url) to inject a reply from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import random
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "ACapptremind0000000000000000000000"
DEFAULT_AUTH_TOKEN = "apptremind-dev-token"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(slots=True)
class SmsMessage:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    date_created: dt.datetime
    status: str = "queued"


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """One webhook post the server made (a status callback or an injected inbound SMS)."""

    url: str
    params: Mapping[str, str]
    status_code: int | None
    error: str | None = None


@dataclass(slots=True)
class _State:
    messages: list[SmsMessage] = field(default_factory=list)
    callbacks: list[CallbackResult] = field(default_factory=list)
    rejected: int = 0


class SmsServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        fail_ratio: float = 0.0,
        seed: int = 0,
        keep_messages: bool = True,
        on_message: Callable[[SmsMessage], None] | None = None,
    ) -> None:
        if not 0.0 <= fail_ratio <= 1.0:
            raise ValueError("fail_ratio must be within 0..1")
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.fail_ratio = fail_ratio
        """Share of requests answered with 503; may be changed while the server runs."""
        self.keep_messages = keep_messages
        self._on_message = on_message
        self._random = random.Random(seed)
        self._cond = threading.Condition()
        self._state = _State()
        self._accepted = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[
                Route(
                    f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create, methods=["POST"]
                ),
                Route(
                    f"/{API_VERSION}/Accounts/{{account_sid}}/Messages/{{sid}}.json",
                    self._fetch,
                    methods=["GET"],
                ),
                Route("/_dev/inbound", self._dev_inbound, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"sms-server-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"SMS server did not start on {self.host}:{self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        self._server = self._thread = None

    def __enter__(self) -> SmsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=10.0) as client:
            self._client = client
            yield
        self._client = None

    # -- what arrived ---------------------------------------------------------------------------------
    def messages(self) -> list[SmsMessage]:
        with self._cond:
            return list(self._state.messages)

    def callbacks(self) -> list[CallbackResult]:
        """Every status callback and inbound webhook posted so far, with the receiver's answer."""
        with self._cond:
            return list(self._state.callbacks)

    @property
    def accepted(self) -> int:
        with self._cond:
            return self._accepted

    @property
    def rejected(self) -> int:
        with self._cond:
            return self._state.rejected

    def wait_for_sync(self, count: int, timeout: float) -> list[SmsMessage]:
        """Block until at least ``count`` messages were accepted; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._accepted} of {count} SMS arrived within {timeout}s")
                self._cond.wait(left)
            return list(self._state.messages)

    async def wait_for(self, count: int, timeout: float) -> list[SmsMessage]:  # noqa: ASYNC109
        """``wait_for_sync`` off the caller's event loop, so senders on that loop keep running."""
        return await asyncio.to_thread(self.wait_for_sync, count, timeout)

    async def inject_inbound(self, from_: str, to: str, body: str, webhook_url: str) -> CallbackResult:
        """Post an inbound SMS (a customer's reply) to ``webhook_url``, signed; returns the receiver's answer.

        Runs on the server's own loop, so the receiver may live on the caller's loop.
        """
        future = self._submit(self._post_inbound(from_, to, body, webhook_url))
        return await asyncio.wrap_future(future)

    # -- the API --------------------------------------------------------------------------------------
    async def _create(self, request: Request) -> Response:
        account_sid = request.path_params["account_sid"]
        if not self._authorized(request, account_sid):
            return _error(401, 20003, "Authenticate")
        if self._fail_now():
            with self._cond:
                self._state.rejected += 1
            return _error(503, 20503, "Service Unavailable")
        form = await _form(request)
        to = form.get("To", "")
        sender = form.get("From", "") or form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        callback = form.get("StatusCallback") or None
        if not _E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        message = SmsMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=sender,
            body=body,
            status_callback=callback,
            date_created=dt.datetime.now(dt.UTC),
        )
        with self._cond:
            self._accepted += 1
            if self.keep_messages:
                self._state.messages.append(message)
            self._cond.notify_all()
        if self._on_message is not None:
            self._on_message(message)
        task = BackgroundTask(self._report_status, message) if callback else None
        return JSONResponse(_message_json(message), status_code=201, background=task)

    async def _fetch(self, request: Request) -> Response:
        account_sid = request.path_params["account_sid"]
        if not self._authorized(request, account_sid):
            return _error(401, 20003, "Authenticate")
        sid = request.path_params["sid"]
        with self._cond:
            found = next((m for m in self._state.messages if m.sid == sid), None)
        if found is None:
            return _error(404, 20404, f"The requested resource /Messages/{sid}.json was not found")
        return JSONResponse(_message_json(found))

    async def _dev_inbound(self, request: Request) -> Response:
        form = await _form(request)
        result = await self._post_inbound(
            str(form.get("From", "")),
            str(form.get("To", "")),
            str(form.get("Body", "")),
            str(form.get("Url", "")),
        )
        return JSONResponse({"status_code": result.status_code, "error": result.error})

    def _authorized(self, request: Request, account_sid: str) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and account_sid == self.account_sid
        )

    def _fail_now(self) -> bool:
        with self._cond:
            return self.fail_ratio > 0 and self._random.random() < self.fail_ratio

    # -- webhooks -------------------------------------------------------------------------------------
    async def _report_status(self, message: SmsMessage) -> None:
        assert message.status_callback is not None
        for status in ("sent", "delivered"):
            message.status = status
            params = {
                "AccountSid": message.account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_,
                "MessageSid": message.sid,
                "MessageStatus": status,
                "SmsSid": message.sid,
                "SmsStatus": status,
                "To": message.to,
            }
            await self._post_signed(message.status_callback, params)

    async def _post_inbound(self, from_: str, to: str, body: str, webhook_url: str) -> CallbackResult:
        sid = "SM" + secrets.token_hex(16)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        return await self._post_signed(webhook_url, params)

    async def _post_signed(self, url: str, params: Mapping[str, str]) -> CallbackResult:
        assert self._client is not None
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url, params)}
        try:
            response = await self._client.post(url, data=dict(params), headers=headers)
            result = CallbackResult(url, dict(params), response.status_code)
        except httpx.HTTPError as exc:
            result = CallbackResult(url, dict(params), None, repr(exc))
        with self._cond:
            self._state.callbacks.append(result)
            self._cond.notify_all()
        return result

    def _submit(self, coro: Any) -> Future[CallbackResult]:
        if self._loop is None:
            coro.close()
            raise RuntimeError("SMS server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(token, url + key/value pairs sorted by key)).

    Kept separate from the platform's verifier on purpose: the server plays Twilio, and a fault shared by
    signer and verifier would cancel out in the tests.
    """
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form body; Twilio's API takes nothing else, so no multipart parser is needed."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def _message_json(message: SmsMessage) -> dict[str, object]:
    created = format_datetime(message.date_created, usegmt=True)
    return {
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": created,
        "date_sent": None,
        "date_updated": created,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": message.from_,
        "messaging_service_sid": message.from_ if message.from_.startswith("MG") else None,
        "num_media": "0",
        "num_segments": str(max(1, -(-len(message.body) // 153)) if len(message.body) > 160 else 1),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {
            "media": f"/{API_VERSION}/Accounts/{message.account_sid}/Messages/{message.sid}/Media.json"
        },
        "to": message.to,
        "uri": f"/{API_VERSION}/Accounts/{message.account_sid}/Messages/{message.sid}.json",
    }


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apptremind_devstack.sms_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = SmsServer(
        args.host,
        args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        fail_ratio=args.fail_ratio,
        seed=args.seed,
        keep_messages=False,
        on_message=lambda m: print(
            f"{m.date_created:%H:%M:%S} {m.sid} {m.from_} -> {m.to}: {m.body}", flush=True
        ),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"sms server listening on {server.base_url} (account {server.account_sid})", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
