"""Delivery channels against real protocol servers: the SMTP sink (STARTTLS, AUTH, 451s) and the
Twilio-shaped SMS server (signed status callbacks and inbound replies), and failover between two sinks."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from apptremind_devstack.ports import free_port, wait_for_port
from apptremind_devstack.sms_server import DEFAULT_ACCOUNT_SID, SmsServer
from apptremind_devstack.smtp_sink import SmtpSink
from apptremind_notification.channels.base import OutgoingMessage, ProviderError
from apptremind_notification.channels.calendar import calendar_invite, invite_attachment
from apptremind_notification.channels.email import SmtpProvider
from apptremind_notification.channels.failover import FailoverProvider
from apptremind_notification.channels.settings import ChannelSettings, build_providers
from apptremind_notification.channels.sms import TwilioProvider
from apptremind_platform.clock import SettableClock
from apptremind_platform.webhook_signatures import verify_twilio_signature

SENDER = "Salon Nord <reminders@salon.example>"
START = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)


def email_message(
    reference: str, *, recipient: str = "ada@example.com", with_invite: bool = False
) -> OutgoingMessage:
    attachments = ()
    if with_invite:
        ics = calendar_invite(f"{reference}@apptremind", START, START + timedelta(minutes=45), "Haircut")
        attachments = (invite_attachment(ics),)
    return OutgoingMessage(
        channel="email",
        recipient=recipient,
        text=f"Plain text for {reference}",
        reference=reference,
        subject=f"Reminder {reference}",
        html=f"<p>HTML for {reference}</p>",
        attachments=attachments,
    )


def smtp(sink: SmtpSink, name: str = "smtp", **kwargs: object) -> SmtpProvider:
    options: dict[str, object] = {
        "sender": SENDER,
        "starttls": True,
        "ca_file": str(sink.ca_file),
        "timeout": 10.0,
    }
    options.update(kwargs)
    return SmtpProvider(name, "127.0.0.1", sink.port, **options)  # type: ignore[arg-type]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(eml_dir=tmp_path / "eml") as s:
        yield s


# -- SMTP ---------------------------------------------------------------------------------------------


async def test_starttls_delivers_text_html_and_calendar_invite(sink: SmtpSink, tmp_path: Path) -> None:
    provider = smtp(sink)
    try:
        result = await provider.send(email_message("d-100", with_invite=True))
    finally:
        await provider.aclose()
    assert result.provider == "smtp"
    assert result.provider_message_id == "<d-100@salon.example>"

    [received] = await sink.wait_for(1, timeout=10)
    assert received.tls, "the message must have travelled over the STARTTLS-upgraded connection"
    assert received.envelope_from == "reminders@salon.example"
    assert received.envelope_to == ("ada@example.com",)
    msg = received.message
    assert msg["Subject"] == "Reminder d-100"
    assert msg["To"] == "ada@example.com"
    assert msg["Message-ID"] == "<d-100@salon.example>"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Plain text for d-100"
    assert html is not None and "<p>HTML for d-100</p>" in html.get_content()
    [invite] = list(msg.iter_attachments())
    assert isinstance(invite, EmailMessage)
    assert invite.get_content_type() == "text/calendar"
    assert invite.get_param("method") == "REQUEST"
    assert invite.get_filename() == "invite.ics"
    ics = invite.get_payload(decode=True)
    assert isinstance(ics, bytes)
    assert b"\r\nDTSTART:20261201T133000Z\r\n" in ics
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 1


async def test_connection_is_reused_across_sends(sink: SmtpSink) -> None:
    provider = smtp(sink, max_connections=1)
    try:
        for n in range(5):
            await provider.send(email_message(f"d-{n}"))
    finally:
        await provider.aclose()
    received = await sink.wait_for(5, timeout=10)
    assert sorted(m.message_id for m in received) == [f"<d-{n}@salon.example>" for n in range(5)]
    # One client address and port for all five: one connection (and one TLS handshake), not five.
    assert len({m.peer for m in received}) == 1 and received[0].peer


async def test_certificate_not_trusted_is_a_permanent_error(sink: SmtpSink) -> None:
    provider = smtp(sink, ca_file=None)  # system CAs only: the sink's self-signed certificate is unknown
    try:
        with pytest.raises(ProviderError) as err:
            await provider.send(email_message("d-1"))
    finally:
        await provider.aclose()
    assert not err.value.retryable
    assert sink.accepted == 0


async def test_server_without_starttls_is_a_permanent_error() -> None:
    with SmtpSink(starttls=False) as plain:
        provider = smtp(plain, ca_file=None)  # insists on STARTTLS; never falls back to plain text
        try:
            with pytest.raises(ProviderError) as err:
                await provider.send(email_message("d-1"))
        finally:
            await provider.aclose()
        assert not err.value.retryable
        assert "STARTTLS" in err.value.reason
        assert plain.accepted == 0


async def test_auth_good_and_bad_credentials() -> None:
    with SmtpSink(auth=("mailer", "s3cret")) as sink:
        good = smtp(sink, username="mailer", password="s3cret")
        bad = smtp(sink, name="bad", username="mailer", password="wrong")
        anonymous = smtp(sink, name="anon")
        try:
            await good.send(email_message("d-ok"))
            with pytest.raises(ProviderError) as bad_err:
                await bad.send(email_message("d-bad"))
            with pytest.raises(ProviderError) as anon_err:
                await anonymous.send(email_message("d-anon"))
        finally:
            for p in (good, bad, anonymous):
                await p.aclose()
        [received] = sink.messages()
        assert received.message_id == "<d-ok@salon.example>"
        assert received.authenticated_as == "mailer"
    assert not bad_err.value.retryable
    assert "535" in bad_err.value.reason
    assert bad_err.value.provider == "bad"
    assert not anon_err.value.retryable  # 530 authentication required
    assert "530" in anon_err.value.reason


async def test_temporary_failure_451_is_retryable_and_the_next_send_succeeds() -> None:
    with SmtpSink(fail_ratio=1.0) as sink:
        provider = smtp(sink)
        try:
            with pytest.raises(ProviderError) as err:
                await provider.send(email_message("d-1"))
            assert err.value.retryable
            assert "451" in err.value.reason
            assert sink.rejected == 1
            sink.fail_ratio = 0.0
            await provider.send(email_message("d-1"))
        finally:
            await provider.aclose()
        [received] = sink.messages()
        assert received.message_id == "<d-1@salon.example>"


async def test_nothing_listening_is_retryable() -> None:
    provider = SmtpProvider("smtp", "127.0.0.1", free_port(), sender=SENDER, starttls=False, timeout=5)
    try:
        with pytest.raises(ProviderError) as err:
            await provider.send(email_message("d-1"))
    finally:
        await provider.aclose()
    assert err.value.retryable


def test_fail_ratio_is_deterministic_per_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        s = SmtpSink(fail_ratio=0.5, seed=seed)
        return [s._fail_now() for _ in range(40)]

    assert pattern(7) == pattern(7)
    assert 5 < sum(pattern(7)) < 35


# -- SMS ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    url: str
    params: dict[str, str]
    signature: str


class WebhookReceiver:
    """A small HTTP endpoint standing where the edge's webhooks will be; it keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[Webhook] = []
        self._cond = threading.Condition()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def _hook(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        hook = Webhook(
            str(request.url),
            form,
            request.headers.get("x-twilio-signature", ""),
        )
        with self._cond:
            self.received.append(hook)
            self._cond.notify_all()
        return PlainTextResponse("", status_code=204)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            assert self._thread.is_alive()
            time.sleep(0.01)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def wait_for_sync(self, count: int, timeout: float) -> list[Webhook]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.received)} of {count} webhooks arrived")
                self._cond.wait(left)
            return list(self.received)


@pytest.fixture
def sms_api() -> Iterator[SmsServer]:
    with SmsServer(auth_token="tok-sms-1") as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    r.start()
    yield r
    r.stop()


def twilio(server: SmsServer, *, callback: str | None = None, token: str | None = None) -> TwilioProvider:
    return TwilioProvider(
        "twilio",
        server.base_url,
        server.account_sid,
        token or server.auth_token,
        "+15005550006",
        callback,
        10.0,
    )


def sms(reference: str, to: str = "+4915112345678") -> OutgoingMessage:
    return OutgoingMessage(channel="sms", recipient=to, text=f"Reminder {reference}", reference=reference)


async def test_sms_send_records_and_status_callbacks_are_signed(
    sms_api: SmsServer, receiver: WebhookReceiver
) -> None:
    provider = twilio(sms_api, callback=receiver.url("/hooks/sms/status"))
    try:
        result = await provider.send(sms("d-7"))
    finally:
        await provider.aclose()
    assert result.provider == "twilio"
    assert result.provider_message_id.startswith("SM")

    [record] = sms_api.messages()
    assert (record.sid, record.to, record.from_, record.body) == (
        result.provider_message_id,
        "+4915112345678",
        "+15005550006",
        "Reminder d-7",
    )
    assert record.status_callback == receiver.url("/hooks/sms/status?delivery=d-7")

    hooks = await asyncio.to_thread(receiver.wait_for_sync, 2, 10.0)
    assert [h.params["MessageStatus"] for h in hooks] == ["sent", "delivered"]
    for hook in hooks:
        assert hook.url == receiver.url("/hooks/sms/status?delivery=d-7")
        assert hook.params["MessageSid"] == result.provider_message_id
        assert hook.params["To"] == "+4915112345678"
        assert hook.params["AccountSid"] == sms_api.account_sid
        assert verify_twilio_signature("tok-sms-1", hook.url, hook.params, hook.signature)
        assert not verify_twilio_signature("another-token", hook.url, hook.params, hook.signature)
        forged = {**hook.params, "MessageStatus": "failed"}
        assert not verify_twilio_signature("tok-sms-1", hook.url, forged, hook.signature)


async def test_inbound_reply_is_posted_signed(sms_api: SmsServer, receiver: WebhookReceiver) -> None:
    result = await sms_api.inject_inbound(
        "+4915112345678", "+15005550006", "STOP", receiver.url("/hooks/sms/in")
    )
    assert result.status_code == 204
    [hook] = receiver.received
    assert hook.params["Body"] == "STOP"
    assert hook.params["From"] == "+4915112345678"
    assert hook.params["To"] == "+15005550006"
    assert hook.params["MessageSid"].startswith("SM")
    assert verify_twilio_signature("tok-sms-1", hook.url, hook.params, hook.signature)


async def test_invalid_number_is_permanent(sms_api: SmsServer) -> None:
    provider = twilio(sms_api)
    try:
        with pytest.raises(ProviderError) as err:
            await provider.send(sms("d-1", to="0151-not-a-number"))
    finally:
        await provider.aclose()
    assert not err.value.retryable
    assert "21211" in err.value.reason
    assert sms_api.messages() == []


async def test_bad_credentials_are_permanent(sms_api: SmsServer) -> None:
    provider = twilio(sms_api, token="wrong")
    try:
        with pytest.raises(ProviderError) as err:
            await provider.send(sms("d-1"))
    finally:
        await provider.aclose()
    assert not err.value.retryable
    assert "401" in err.value.reason
    assert sms_api.messages() == []


async def test_server_errors_are_retryable(sms_api: SmsServer) -> None:
    sms_api.fail_ratio = 1.0
    provider = twilio(sms_api)
    try:
        with pytest.raises(ProviderError) as err:
            await provider.send(sms("d-1"))
        sms_api.fail_ratio = 0.0
        await provider.send(sms("d-1"))
    finally:
        await provider.aclose()
    assert err.value.retryable
    assert "503" in err.value.reason
    assert sms_api.rejected == 1
    assert [m.body for m in sms_api.messages()] == ["Reminder d-1"]


# -- failover -----------------------------------------------------------------------------------------


async def test_failover_to_secondary_sink_and_back_after_cooldown() -> None:
    clock = SettableClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    with SmtpSink(fail_ratio=1.0) as primary_sink, SmtpSink() as secondary_sink:
        breaker = FailoverProvider(
            smtp(primary_sink, name="primary"),
            smtp(secondary_sink, name="secondary"),
            failure_threshold=2,
            cooldown_s=60,
            clock=clock,
        )
        try:
            with pytest.raises(ProviderError) as first:
                await breaker.send(email_message("d-1"))
            assert first.value.retryable and first.value.provider == "primary"
            # The second consecutive failure opens the circuit and goes out through the secondary.
            assert (await breaker.send(email_message("d-2"))).provider == "secondary"
            primary_sink.fail_ratio = 0.0  # the primary recovers, but the circuit stays open until cooldown
            assert (await breaker.send(email_message("d-3"))).provider == "secondary"
            clock.advance(timedelta(seconds=61))
            assert (await breaker.send(email_message("d-4"))).provider == "primary"
            assert (await breaker.send(email_message("d-5"))).provider == "primary"
        finally:
            await breaker.aclose()
        assert primary_sink.rejected == 2
        assert [m.message_id for m in primary_sink.messages()] == [
            "<d-4@salon.example>",
            "<d-5@salon.example>",
        ]
        assert [m.message_id for m in secondary_sink.messages()] == [
            "<d-2@salon.example>",
            "<d-3@salon.example>",
        ]


# -- settings → providers ---------------------------------------------------------------------------


async def test_providers_built_from_environment_deliver(
    sink: SmtpSink, sms_api: SmsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPTREMIND_SMTP_PORT", str(sink.port))
    monkeypatch.setenv("APPTREMIND_SMTP_CA_FILE", str(sink.ca_file))
    monkeypatch.setenv("APPTREMIND_SMTP_SENDER", SENDER)
    monkeypatch.setenv("APPTREMIND_SMS_BASE_URL", sms_api.base_url)
    monkeypatch.setenv("APPTREMIND_SMS_ACCOUNT_SID", sms_api.account_sid)
    monkeypatch.setenv("APPTREMIND_SMS_AUTH_TOKEN", sms_api.auth_token)
    providers = build_providers(ChannelSettings())
    try:
        await providers["email"].send(email_message("d-env"))
        await providers["sms"].send(sms("d-env"))
    finally:
        for provider in providers.values():
            await provider.aclose()
    [mail] = await sink.wait_for(1, timeout=10)
    assert mail.tls and mail.message_id == "<d-env@salon.example>"
    [text] = sms_api.messages()
    assert text.body == "Reminder d-env"


# -- the servers as processes (what `make up` runs) -----------------------------------------------------


async def test_servers_run_as_processes(tmp_path: Path) -> None:
    smtp_port, sms_port = free_port(), free_port()
    smtp_proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apptremind_devstack.smtp_sink",
        "--port",
        str(smtp_port),
        "--cert-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    sms_proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apptremind_devstack.sms_server",
        "--port",
        str(sms_port),
        "--auth-token",
        "tok",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", smtp_port, 60)
        await asyncio.to_thread(wait_for_port, "127.0.0.1", sms_port, 60)
        mail = SmtpProvider(
            "smtp", "127.0.0.1", smtp_port, sender=SENDER, ca_file=str(tmp_path / "smtp-sink.crt"), timeout=10
        )
        text = TwilioProvider(
            "sms", f"http://127.0.0.1:{sms_port}", DEFAULT_ACCOUNT_SID, "tok", "+15005550006", None, 10.0
        )
        try:
            await mail.send(email_message("d-proc"))
            sid = (await text.send(sms("d-proc"))).provider_message_id
        finally:
            await mail.aclose()
            await text.aclose()
    finally:
        for proc in (smtp_proc, sms_proc):
            proc.send_signal(signal.SIGTERM)
        smtp_out = (await asyncio.wait_for(smtp_proc.communicate(), 30))[0].decode()
        sms_out = (await asyncio.wait_for(sms_proc.communicate(), 30))[0].decode()
    assert smtp_proc.returncode == 0 and sms_proc.returncode == 0
    assert f"listening on 127.0.0.1:{smtp_port}" in smtp_out
    assert "reminders@salon.example -> ada@example.com: Reminder d-proc" in smtp_out
    assert f"{sid} +15005550006 -> +4915112345678: Reminder d-proc" in sms_out
