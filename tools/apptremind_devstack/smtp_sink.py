"""A real SMTP server for tests and `make up`: STARTTLS with a self-signed certificate made at start,
optional AUTH, every accepted message kept (parsed) in memory and optionally as .eml files.

``fail_ratio`` makes it answer ``451`` (a temporary failure) to that share of messages, drawn from a seeded
generator so a run can be repeated. In-process use (its own thread and event loop)::

    sink = SmtpSink(auth=("user", "secret")); sink.start()
    ... SmtpProvider("smtp", "127.0.0.1", sink.port, starttls=True, ca_file=str(sink.ca_file), ...)
    [msg] = await sink.wait_for(1, timeout=10)

or as a process: ``python -m apptremind_devstack.smtp_sink --port 2525``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import email.policy
import functools
import ipaddress
import random
import signal
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ports import free_port


@dataclass(frozen=True)
class SinkMessage:
    envelope_from: str
    envelope_to: tuple[str, ...]
    raw: bytes
    received_at: dt.datetime
    tls: bool
    """Whether the message came over a STARTTLS-upgraded connection."""
    authenticated_as: str | None
    peer: str = ""
    """The client's address and port: messages with the same peer came over the same connection."""

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The parsed message; parsed on first use, since full parsing costs milliseconds per message."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @functools.cached_property
    def headers(self) -> Message:
        """The top-level headers only, cheaply (encoded words are left encoded)."""
        return BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.raw)

    @property
    def subject(self) -> str:
        return str(make_header(decode_header(self.headers.get("Subject", ""))))

    @property
    def message_id(self) -> str:
        return str(self.headers.get("Message-ID", ""))


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        starttls: bool = True,
        auth: tuple[str, str] | None = None,
        fail_ratio: float = 0.0,
        seed: int = 0,
        eml_dir: Path | None = None,
        cert_dir: Path | None = None,
        keep_messages: bool = True,
        on_message: Callable[[SinkMessage], None] | None = None,
    ) -> None:
        if not 0.0 <= fail_ratio <= 1.0:
            raise ValueError("fail_ratio must be within 0..1")
        self.host = host
        self.port = port or free_port()
        self.starttls = starttls
        self.auth = auth
        self.fail_ratio = fail_ratio
        """Share of messages answered with 451; may be changed while the sink runs."""
        self.eml_dir = eml_dir
        self.keep_messages = keep_messages
        self._on_message = on_message
        self._random = random.Random(seed)
        self._owned_cert_dir = None if cert_dir else tempfile.TemporaryDirectory(prefix="smtp-sink-")
        self._cert_dir = cert_dir or Path(self._owned_cert_dir.name)  # type: ignore[union-attr]
        self.ca_file = self._cert_dir / "smtp-sink.crt"
        """The self-signed certificate (its own CA): clients verify the server against this file."""
        self.key_file = self._cert_dir / "smtp-sink.key"
        self._cond = threading.Condition()
        self._messages: list[SinkMessage] = []
        self._accepted = 0
        self._rejected = 0
        self._controller: Controller | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        tls_context = None
        if self.starttls:
            write_self_signed_cert(self.ca_file, self.key_file, hosts=("localhost", "127.0.0.1", self.host))
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(self.ca_file, self.key_file)
        if self.eml_dir is not None:
            self.eml_dir.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=30.0,
            server_hostname="localhost",
            tls_context=tls_context,
            require_starttls=self.starttls,
            authenticator=self._authenticate if self.auth else None,
            auth_required=self.auth is not None,
            auth_require_tls=self.starttls,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._owned_cert_dir is not None:
            self._owned_cert_dir.cleanup()
            self._owned_cert_dir = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ---------------------------------------------------------------------------------
    def messages(self) -> list[SinkMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def accepted(self) -> int:
        """Messages accepted (250) so far, also when ``keep_messages`` is off."""
        with self._cond:
            return self._accepted

    @property
    def rejected(self) -> int:
        """Messages answered with 451 by ``fail_ratio``."""
        with self._cond:
            return self._rejected

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for_sync(self, count: int, timeout: float) -> list[SinkMessage]:
        """Block until at least ``count`` messages were accepted; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._accepted} of {count} messages arrived within {timeout}s")
                self._cond.wait(left)
            return list(self._messages)

    async def wait_for(self, count: int, timeout: float) -> list[SinkMessage]:  # noqa: ASYNC109
        """``wait_for_sync`` off the caller's event loop, so senders on that loop keep running."""
        return await asyncio.to_thread(self.wait_for_sync, count, timeout)

    # -- server side ----------------------------------------------------------------------------------
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.auth is not None and isinstance(auth_data, LoginPassword):
            user, password = self.auth
            if auth_data.login == user.encode() and auth_data.password == password.encode():
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def _fail_now(self) -> bool:
        with self._cond:
            return self.fail_ratio > 0 and self._random.random() < self.fail_ratio

    def _store(self, envelope: Envelope, session: Session) -> None:
        content = envelope.original_content or b""
        record = SinkMessage(
            envelope_from=envelope.mail_from or "",
            envelope_to=tuple(envelope.rcpt_tos),
            raw=content,
            received_at=dt.datetime.now(dt.UTC),
            tls=session.ssl is not None,
            authenticated_as=session.auth_data if isinstance(session.auth_data, str) else None,
            peer=":".join(str(part) for part in session.peer[:2]) if session.peer else "",
        )
        with self._cond:
            self._accepted += 1
            number = self._accepted
            if self.keep_messages:
                self._messages.append(record)
            self._cond.notify_all()
        if self.eml_dir is not None:
            name = f"{record.received_at:%Y%m%dT%H%M%S%f}-{number:06d}.eml"
            (self.eml_dir / name).write_bytes(content)
        if self._on_message is not None:
            self._on_message(record)

    def _count_rejected(self) -> None:
        with self._cond:
            self._rejected += 1


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink._fail_now():
            self._sink._count_rejected()
            return "451 4.3.0 Temporary failure, try again later"
        self._sink._store(envelope, session)
        return "250 2.0.0 OK: queued"


def write_self_signed_cert(cert_file: Path, key_file: Path, *, hosts: Sequence[str]) -> None:
    """A P-256 key and a one-day self-signed certificate naming ``hosts`` (DNS names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apptremind smtp sink")])
    alt_names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apptremind_devstack.smtp_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--no-starttls", action="store_true", help="plain SMTP only")
    parser.add_argument("--user", help="require AUTH with this user (needs --password)")
    parser.add_argument("--password")
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eml-dir", type=Path, help="also write every accepted message here")
    parser.add_argument("--cert-dir", type=Path, help="where to write the certificate (default: a temp dir)")
    args = parser.parse_args(argv)
    if bool(args.user) != bool(args.password):
        parser.error("--user and --password go together")
    sink = SmtpSink(
        args.host,
        args.port,
        starttls=not args.no_starttls,
        auth=(args.user, args.password) if args.user else None,
        fail_ratio=args.fail_ratio,
        seed=args.seed,
        eml_dir=args.eml_dir,
        cert_dir=args.cert_dir,
        keep_messages=False,
        on_message=lambda m: print(
            f"{m.received_at:%H:%M:%S} {m.envelope_from} -> {', '.join(m.envelope_to)}: {m.subject}",
            flush=True,
        ),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sink.start()
    tls = f" STARTTLS (CA file {sink.ca_file})" if sink.starttls else ""
    print(f"smtp sink listening on {sink.host}:{sink.port}{tls}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
