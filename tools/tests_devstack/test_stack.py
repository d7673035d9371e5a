"""`make up` on a fresh state directory brings every process up healthy, the reminder pipeline wired
end to end; `make down` leaves nothing running.

The stack runs exactly as `make up` runs it (the CLI in a subprocess), but in a temporary state directory
and with every port moved to a free one, so it never collides with a developer's own `make up`. The
pipeline checks share that one run (a second stack would cost as long again).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import grpc
import pytest
from confluent_kafka import KafkaError, Message, Producer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from apptremind_devstack import _osproc, procs
from apptremind_devstack.postgres import postmaster_pid
from apptremind_devstack.sms_server import DEFAULT_ACCOUNT_SID, twilio_signature
from apptremind_devstack.stack import (
    SERVICES,
    SMS_SERVER_PORT,
    SMTP_SINK_PORT,
    STREAMS,
    STRIPE_MOCK_PORT,
    Layout,
    StateDir,
    grpc_port_env,
    http_port_env,
    relay_port_env,
)
from apptremind_devstack.stripe_mock import stripe_mock_binary
from apptremind_gen.apptremind.events.booking import v1 as booking_events
from apptremind_platform.envelope import Event, encode, headers_for
from apptremind_platform.webhook_signatures import stripe_signature_header

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _stack_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "APPTREMIND_PG_DSN"}
    names = [
        "APPTREMIND_PG_PORT",
        "APPTREMIND_KAFKA_PORT",
        "APPTREMIND_KAFKA_CONTROLLER_PORT",
        "APPTREMIND_EDGE_PORT",
        SMTP_SINK_PORT[0],
        SMS_SERVER_PORT[0],
        STRIPE_MOCK_PORT[0],
    ]
    for service in SERVICES:
        names += [grpc_port_env(service), http_port_env(service), relay_port_env(service)]
    env.update(zip(names, map(str, _free_ports(len(names))), strict=True))
    env["APPTREMIND_STACK_DIR"] = str(state_dir)
    return env


def _cli(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "apptremind_devstack.cli", command]
    if command == "up":
        argv += ["--timeout", "100"]
    return subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def _grpc_health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        status: int = response.status
        return status


def _reflected_services(target: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        services: list[str] = ProtoReflectionDescriptorDatabase(channel).get_services()
        return services


def _recorded_pids(state_dir: Path) -> dict[int, tuple[str, int | None]]:
    """Every process `up` recorded, with its kernel start time, plus the members of their groups."""
    pids: dict[int, tuple[str, int | None]] = {}
    for record in procs.records(state_dir):
        if record.pgdata is not None:
            postmaster = postmaster_pid(record.pgdata)
            assert postmaster is not None, f"{record.name} is recorded but not running"
            for pid in [postmaster, *_osproc.children(postmaster)]:
                pids[pid] = (record.name, _osproc.start_time(pid))
        else:
            assert record.pid is not None
            assert record.alive(), f"{record.name} is recorded but not running"
            for pid in [record.pid, *_osproc.group_members(record.pid)]:
                pids[pid] = (record.name, _osproc.start_time(pid))
    return pids


def _still_running(pid: int, started: int | None) -> bool:
    stat = _osproc.proc_stat(pid)
    if stat is None:
        return False  # no /proc/<pid>: gone
    if started is not None and stat.start_time != started:
        return False  # the pid was recycled by an unrelated process
    # A zombie has exited; it lingers only until its new parent (PID 1 in a container) reaps it.
    return stat.alive


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    # Not under pytest's tmp root, which any starting pytest session resets to mode 0700: the stack's
    # Postgres runs as its own user and must keep reaching its data directory.
    work = Path(tempfile.mkdtemp(prefix="apptremind-stack-test-"))
    env = _stack_env(work / "stack")
    yield env
    # Whatever happened above, leave nothing running.
    _cli("down", env, timeout=120)
    shutil.rmtree(work, ignore_errors=True)


def test_up_brings_everything_up_healthy_and_down_leaves_nothing(stack_env: dict[str, str]) -> None:
    state_dir = Path(stack_env["APPTREMIND_STACK_DIR"])
    up = _cli("up", stack_env, timeout=150)
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    assert "every process is healthy" in up.stdout

    stored = json.loads((state_dir / "stack.json").read_text())
    layout = Layout.from_json(stored["layout"])
    assert layout.pg_port == int(stack_env["APPTREMIND_PG_PORT"])  # the overrides were honoured
    started = {c["name"] for c in stored["components"]}
    assert set(SERVICES) <= started
    assert {f"{s}-relay" for s in SERVICES} <= started
    assert {"smtp-sink", "sms-server", STREAMS} <= started
    # stripe-mock runs whenever it is installed (`up` skips it with a word otherwise).
    assert ("stripe-mock" in started) == (stripe_mock_binary() is not None)
    if "stripe-mock" in started:
        assert layout.stripe_port == int(stack_env[STRIPE_MOCK_PORT[0]])
    assert layout.smtp_port == int(stack_env[SMTP_SINK_PORT[0]])
    assert layout.sms_port == int(stack_env[SMS_SERVER_PORT[0]])
    assert f"127.0.0.1:{layout.grpc_ports['scheduler']}" in up.stdout
    assert "****" in up.stdout
    secrets = json.loads((state_dir / "secrets.json").read_text())
    assert secrets["postgres_password"] not in up.stdout
    assert (state_dir / "secrets.json").stat().st_mode & 0o777 == 0o600

    for service in SERVICES:
        assert _http_status(f"http://127.0.0.1:{layout.side_ports[service]}/readyz") == 200, service
        assert _http_status(f"http://127.0.0.1:{layout.relay_ports[service]}/readyz") == 200, service
        target = f"127.0.0.1:{layout.grpc_ports[service]}"
        assert _grpc_health(target) == health_pb2.HealthCheckResponse.SERVING, service
    if "edge" in started:
        assert _http_status(f"http://127.0.0.1:{layout.edge_port}/readyz") == 200
    assert "apptremind.scheduler.v1.SchedulerService" in _reflected_services(
        f"127.0.0.1:{layout.grpc_ports['scheduler']}"
    )

    _check_smtp_sink(StateDir(state_dir), layout)
    _check_sms_account(layout, secrets["sms_auth_token"])
    if "edge" in started:
        _check_sms_webhooks(layout, secrets["sms_auth_token"])
    if "edge" in started and "stripe-mock" in started:
        _check_stripe_webhooks(layout, secrets["stripe_webhook_secret"])
    _check_confirmation_mail(StateDir(state_dir), layout)

    # A second `up` while everything runs starts nothing and just reports.
    again = _cli("up", stack_env, timeout=60)
    assert again.returncode == 0, f"second up failed:\n{again.stdout}\n{again.stderr}"
    assert "already up" in again.stdout
    status = _cli("status", stack_env, timeout=60)
    assert status.returncode == 0, status.stdout
    streams_row = next(line for line in status.stdout.splitlines() if line.startswith(f"{STREAMS} "))
    assert streams_row.split()[2:4] == ["alive", "ready"], status.stdout

    pids = _recorded_pids(state_dir)
    assert len(pids) >= 2 + 2 * len(SERVICES)
    down = _cli("down", stack_env, timeout=120)
    assert down.returncode == 0, f"down failed:\n{down.stdout}\n{down.stderr}"
    survivors = {pid: name for pid, (name, started_at) in pids.items() if _still_running(pid, started_at)}
    assert survivors == {}, f"still running after down: {survivors}"
    assert procs.records(state_dir) == []


# -- the reminder pipeline's processes ------------------------------------------------------------------


def _eml_files(state: StateDir) -> list[Path]:
    return sorted(state.mail_dir.glob("*.eml")) if state.mail_dir.is_dir() else []


def _wait_for_mail(state: StateDir, recipient: str, timeout: float) -> EmailMessage:
    """The first mail the SMTP sink wrote to its mail directory for ``recipient``."""
    deadline = time.monotonic() + timeout
    while True:
        for path in _eml_files(state):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if recipient in str(message["To"]):
                return message
        assert time.monotonic() < deadline, (
            f"no mail to {recipient} within {timeout:.0f} s; streams log:\n"
            + _osproc.tail(state.log(STREAMS), 40)
        )
        time.sleep(0.5)


def _check_smtp_sink(state: StateDir, layout: Layout) -> None:
    """The sink speaks STARTTLS with the certificate in the state directory (the file the stream worker
    trusts) and keeps every accepted mail as an .eml file."""
    context = ssl.create_default_context(cafile=str(state.smtp_ca_file))
    recipient = f"sink-{uuid.uuid4().hex[:8]}@example.com"
    message = EmailMessage()
    message["From"] = "check@apptremind.localhost"
    message["To"] = recipient
    message["Subject"] = "sink check"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", layout.smtp_port, timeout=10) as client:
        client.starttls(context=context)  # verifies the certificate against the CA file
        refused = client.send_message(message)
    assert refused == {}
    assert _wait_for_mail(state, recipient, timeout=10)["Subject"] == "sink check"


def _sms_post(layout: Layout, token: str, fields: dict[str, str]) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{layout.sms_port}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    basic = base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{token}".encode()).decode()
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(fields).encode(), headers={"Authorization": f"Basic {basic}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _check_sms_account(layout: Layout, token: str) -> None:
    """The SMS server accepts the stack's generated auth token (the one the stream worker sends with) and
    refuses any other."""
    fields = {"To": "+15551230000", "From": "+15005550006", "Body": "stack check"}
    status, body = _sms_post(layout, token, fields)
    assert status == 201, body
    assert str(body["sid"]).startswith("SM")
    status, body = _sms_post(layout, token + "x", fields)
    assert (status, body["code"]) == (401, 20003)


def _post_form(url: str, params: dict[str, str], signature: str) -> int:
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(params).encode(), headers={"X-Twilio-Signature": signature}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def _check_sms_webhooks(layout: Layout, token: str) -> None:
    """A status callback signed as the SMS server signs it passes the edge (its token and public base URL)
    and notification-service, which checks the signature again (ADR 0006) and would make the edge answer
    403 on a mismatch; a forged one is refused."""
    url = f"http://127.0.0.1:{layout.edge_port}/webhooks/twilio/status?delivery={uuid.uuid4()}"
    params = {
        "AccountSid": DEFAULT_ACCOUNT_SID,
        "MessageSid": "SM" + uuid.uuid4().hex,
        "MessageStatus": "delivered",
        "To": "+15551230000",
        "From": "+15005550006",
    }
    assert _post_form(url, params, twilio_signature(token, url, params)) == 204
    assert _post_form(url, params, twilio_signature(token + "x", url, params)) == 403


def _check_stripe_webhooks(layout: Layout, secret: str) -> None:
    """A Stripe event signed with the stack's webhook secret passes the edge and billing-service (which
    checks the signature again with the same secret from secrets.json); a forged one is refused with 400."""
    business_id = str(uuid.uuid4())
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "created": int(time.time()),
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": f"cs_test_{uuid.uuid4().hex[:16]}",
                    "object": "checkout.session",
                    "client_reference_id": business_id,
                    "customer": f"cus_{uuid.uuid4().hex[:14]}",
                    "subscription": f"sub_{uuid.uuid4().hex[:14]}",
                    "mode": "subscription",
                    "payment_status": "paid",
                    "status": "complete",
                    "metadata": {"business_id": business_id, "plan": "pro"},
                }
            },
        }
    ).encode()
    url = f"http://127.0.0.1:{layout.edge_port}/webhooks/stripe"

    def post(signing_secret: str) -> int:
        header = stripe_signature_header(signing_secret, payload, int(time.time()))
        request = urllib.request.Request(
            url, data=payload, headers={"Stripe-Signature": header}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post(secret + "x") == 400
    assert post(secret) == 200
    # stripe-mock answers Stripe's API (billing's checkout and portal calls go there).
    assert _http_status(f"http://127.0.0.1:{layout.stripe_port}/v1/customers") == 401


def _produce(layout: Layout, event: Event) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(
        {"bootstrap.servers": layout.bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    producer.produce(
        event.topic,
        key=event.partition_key.encode(),
        value=encode(event, "stack-test"),
        headers=list(headers_for(event).items()),
        on_delivery=on_delivery,
    )
    assert producer.flush(30) == 0
    assert errors == []


def _check_confirmation_mail(state: StateDir, layout: Layout) -> None:
    """A booking event reaches the stream worker, which records the delivery in notification's database
    and mails the confirmation with its invitation through the sink over verified STARTTLS."""
    business_id, appointment_id = str(uuid.uuid4()), str(uuid.uuid4())
    recipient = f"kim-{appointment_id[:8]}@example.com"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    booked = booking_events.AppointmentBooked(
        business_id=business_id,
        appointment_id=appointment_id,
        start_time=start,
        end_time=start + dt.timedelta(minutes=30),
        customer_email=recipient,
        template_data={
            "business_name": "Hair by Ana",
            "service_name": "Haircut",
            "customer_name": "Kim",
            "business_time_zone": "Europe/Berlin",
            "customer_time_zone": "Europe/Berlin",
            "locale": "en",
            "appointment_id": appointment_id,
        },
    )
    _produce(layout, Event("booking.appointment.booked.v1", business_id, booked))
    mail = _wait_for_mail(state, recipient, timeout=60)
    assert "Haircut" in str(mail["Subject"]) + mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert any(part.get_filename() == "invite.ics" for part in mail.iter_attachments())
