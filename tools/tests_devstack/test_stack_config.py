"""What `make up` hands each process, without starting any: the pipeline's ports, launch order, settings
and secrets (test_stack.py proves the same wiring against the running stack)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from apptremind_devstack.stack import (
    EDGE,
    SMS_SERVER,
    SMTP_SINK,
    STREAMS,
    STREAMS_GROUP,
    STRIPE_MOCK,
    Component,
    Layout,
    Secrets,
    Stack,
    StackError,
    load_or_create_secrets,
    scheduler_pool_max,
)

ADMIN_DSN = "postgresql://postgres:pw@127.0.0.1:15432/postgres"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path / "stack")


@pytest.fixture
def stack_secrets() -> Secrets:
    services = ("auth", "business", "booking", "billing", "scheduler", "notification", "analytics")
    return Secrets(
        postgres_password="pg",
        runtime_passwords={s: f"run-{s}" for s in services},
        migrator_passwords={s: f"mig-{s}" for s in services},
        sms_auth_token="sms-token-1234",
        stripe_webhook_secret="whsec_stack_test",
    )


def _component(layout: Layout, name: str) -> Component:
    return next(c for c in layout.components(edge=True) if c.name == name)


def test_the_sink_and_sms_server_have_default_ports_that_the_environment_moves() -> None:
    layout = Layout.from_env({})
    assert (layout.smtp_port, layout.sms_port) == (2525, 8090)
    moved = Layout.from_env({"APPTREMIND_SMTP_SINK_PORT": "3525", "APPTREMIND_SMS_SERVER_PORT": "9090"})
    assert (moved.smtp_port, moved.sms_port) == (3525, 9090)
    with pytest.raises(StackError, match=r"\[8080\] assigned twice"):
        Layout.from_env({"APPTREMIND_SMS_SERVER_PORT": "8080"})
    with pytest.raises(StackError, match="APPTREMIND_SMTP_SINK_PORT"):
        Layout.from_env({"APPTREMIND_SMTP_SINK_PORT": "smtp"})


def test_a_stack_file_written_before_the_pipeline_existed_still_loads() -> None:
    stored = asdict(Layout.from_env({}))
    del stored["smtp_port"], stored["sms_port"]
    assert Layout.from_json(stored).smtp_port == 2525


def test_providers_start_first_and_the_stream_worker_after_the_services() -> None:
    names = [c.name for c in Layout.from_env({}).components(edge=True)]
    assert names[:3] == [SMTP_SINK, SMS_SERVER, STRIPE_MOCK]
    assert names[-2:] == [STREAMS, EDGE]  # `down` stops in reverse: edge and worker first, providers last
    assert names.index("notification") < names.index(STREAMS)


def test_the_stream_worker_gets_notifications_database_and_this_stacks_providers(
    stack: Stack, stack_secrets: Secrets
) -> None:
    layout = Layout.from_env({})
    env = stack._env(_component(layout, STREAMS), layout, ADMIN_DSN, stack_secrets)
    state = stack.state.root
    assert env["APPTREMIND_DATABASE_URL"] == (
        "postgresql://apptremind_notification:run-notification@127.0.0.1:15432/apptremind_notification"
    )
    assert env["APPTREMIND_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["APPTREMIND_BOOKING_TARGET"] == "127.0.0.1:50053"
    assert (env["APPTREMIND_SMTP_HOST"], env["APPTREMIND_SMTP_PORT"]) == ("127.0.0.1", "2525")
    assert env["APPTREMIND_SMTP_CA_FILE"] == str(state / "smtp-sink" / "smtp-sink.crt")
    assert env["APPTREMIND_SMS_BASE_URL"] == "http://127.0.0.1:8090"
    assert env["APPTREMIND_SMS_AUTH_TOKEN"] == "sms-token-1234"
    assert env["APPTREMIND_SMS_STATUS_CALLBACK_URL"] == "http://127.0.0.1:8080/webhooks/twilio/status"
    assert env["APPTREMIND_STREAMS_APP_ID"] == STREAMS_GROUP
    assert Path(env["APPTREMIND_STREAMS_DATA_DIR"]).is_dir()
    assert Path(env["APPTREMIND_STREAMS_DATA_DIR"]).is_relative_to(state)
    # The worker serves no port: nothing would listen on one handed to it.
    assert "APPTREMIND_GRPC_PORT" not in env
    assert "APPTREMIND_HTTP_PORT" not in env
    # Nor may Faust open its default web port (6066), which a second worker on the machine would hold.
    assert stack._argv(_component(layout, STREAMS), stack_secrets)[-1] == "--without-web"


def test_notification_edge_and_scheduler_get_the_pipelines_settings(
    stack: Stack, stack_secrets: Secrets
) -> None:
    layout = Layout.from_env({})
    notification = stack._env(_component(layout, "notification"), layout, ADMIN_DSN, stack_secrets)
    assert notification["APPTREMIND_BOOKING_TARGET"] == "127.0.0.1:50053"
    assert notification["APPTREMIND_SMS_AUTH_TOKEN"] == "sms-token-1234"
    edge = stack._env(_component(layout, EDGE), layout, ADMIN_DSN, stack_secrets)
    assert edge["APPTREMIND_EDGE_SMS_AUTH_TOKEN"] == "sms-token-1234"
    assert edge["APPTREMIND_EDGE_PUBLIC_BASE_URL"] == "http://127.0.0.1:8080"
    scheduler = stack._env(_component(layout, "scheduler"), layout, ADMIN_DSN, stack_secrets)
    assert int(scheduler["APPTREMIND_DB_POOL_MAX"]) >= 2 + 4
    # The providers need no database, and nothing of the stack's secrets but what their argv carries.
    for name in (SMTP_SINK, SMS_SERVER):
        env = stack._env(_component(layout, name), layout, ADMIN_DSN, stack_secrets)
        assert "APPTREMIND_DATABASE_URL" not in env
    assert stack._argv(_component(layout, SMS_SERVER), stack_secrets)[-4:] == [
        "--port",
        "8090",
        "--auth-token",
        "sms-token-1234",
    ]


def test_the_schedulers_pool_covers_its_workers() -> None:
    assert scheduler_pool_max({}) == 10
    assert scheduler_pool_max({"APPTREMIND_SCHEDULER_WORKERS": "8"}) == 12
    assert scheduler_pool_max({"APPTREMIND_SCHEDULER_WORKERS": "8", "APPTREMIND_DB_POOL_MAX": "20"}) == 20
    with pytest.raises(StackError, match="APPTREMIND_SCHEDULER_WORKERS"):
        scheduler_pool_max({"APPTREMIND_SCHEDULER_WORKERS": "many"})


def test_an_older_secrets_file_gains_an_sms_token_and_keeps_its_passwords(tmp_path: Path) -> None:
    first, created = load_or_create_secrets(tmp_path / "secrets.json")
    assert created
    data = json.loads((tmp_path / "secrets.json").read_text())
    del data["sms_auth_token"]
    (tmp_path / "secrets.json").write_text(json.dumps(data))

    again, created = load_or_create_secrets(tmp_path / "secrets.json")
    assert not created
    assert again.sms_auth_token
    assert again.sms_auth_token != first.sms_auth_token
    assert again.postgres_password == first.postgres_password
    assert again.runtime_passwords == first.runtime_passwords
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    third, _ = load_or_create_secrets(tmp_path / "secrets.json")
    assert third.sms_auth_token == again.sms_auth_token


def test_stripe_mock_has_a_default_port_that_the_environment_moves() -> None:
    assert Layout.from_env({}).stripe_port == 12111
    assert Layout.from_env({"APPTREMIND_STRIPE_MOCK_PORT": "13111"}).stripe_port == 13111
    with pytest.raises(StackError, match=r"\[8090\] assigned twice"):
        Layout.from_env({"APPTREMIND_STRIPE_MOCK_PORT": "8090"})
    stored = asdict(Layout.from_env({}))
    del stored["stripe_port"]
    assert Layout.from_json(stored).stripe_port == 12111


def test_billing_business_and_the_edge_get_stripe_and_the_seat_check_wiring(
    stack: Stack, stack_secrets: Secrets
) -> None:
    layout = Layout.from_env({})
    billing = stack._env(_component(layout, "billing"), layout, ADMIN_DSN, stack_secrets)
    assert billing["APPTREMIND_STRIPE_API_BASE"] == "http://127.0.0.1:12111"
    assert billing["APPTREMIND_STRIPE_API_KEY"].startswith("sk_test_")
    assert billing["APPTREMIND_STRIPE_WEBHOOK_SECRET"] == "whsec_stack_test"
    assert billing["APPTREMIND_STRIPE_PRICE_PRO"]
    assert billing["APPTREMIND_STRIPE_PRICE_BUSINESS"]
    assert billing["APPTREMIND_BILLING_RETURN_URL"] == "http://127.0.0.1:8080/billing"
    business = stack._env(_component(layout, "business"), layout, ADMIN_DSN, stack_secrets)
    assert business["APPTREMIND_BILLING_TARGET"] == "127.0.0.1:50054"
    assert "APPTREMIND_BILLING_SEAT_CHECK" not in business
    edge = stack._env(_component(layout, EDGE), layout, ADMIN_DSN, stack_secrets)
    assert edge["APPTREMIND_EDGE_STRIPE_WEBHOOK_SECRET"] == "whsec_stack_test"
    # Only billing holds the Stripe key; stripe-mock needs no database.
    assert "APPTREMIND_STRIPE_API_KEY" not in edge
    stripe = stack._env(_component(layout, STRIPE_MOCK), layout, ADMIN_DSN, stack_secrets)
    assert "APPTREMIND_DATABASE_URL" not in stripe


def test_stripe_mock_is_launched_as_its_binary_on_its_port(
    stack: Stack, stack_secrets: Secrets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "stripe-mock"
    binary.write_text("")
    monkeypatch.setenv("APPTREMIND_STRIPE_MOCK", str(binary))
    layout = Layout.from_env({})
    assert stack._argv(_component(layout, STRIPE_MOCK), stack_secrets) == [
        str(binary),
        "-http-addr",
        "127.0.0.1:12111",
        "-https-addr",
        "127.0.0.1:",
    ]


def test_an_older_secrets_file_gains_a_stripe_webhook_secret(tmp_path: Path) -> None:
    first, _ = load_or_create_secrets(tmp_path / "secrets.json")
    assert first.stripe_webhook_secret.startswith("whsec_")
    data = json.loads((tmp_path / "secrets.json").read_text())
    del data["stripe_webhook_secret"]
    (tmp_path / "secrets.json").write_text(json.dumps(data))

    again, created = load_or_create_secrets(tmp_path / "secrets.json")
    assert not created
    assert again.stripe_webhook_secret.startswith("whsec_")
    assert again.stripe_webhook_secret != first.stripe_webhook_secret
    assert again.sms_auth_token == first.sms_auth_token
    third, _ = load_or_create_secrets(tmp_path / "secrets.json")
    assert third.stripe_webhook_secret == again.stripe_webhook_secret
