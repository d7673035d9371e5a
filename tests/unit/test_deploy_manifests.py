"""docker-compose.yml and the Helm chart only start commands that exist, and wire the reminder pipeline the
way `make up` does: the stream worker on notification's database with the providers' settings, one SMS
auth token shared by provider, edge and notification-service, and a scheduler pool that covers its workers.
All three (and `make up`'s own process settings) give each calling service a client secret and auth-service
exactly their hashes (ADR 0013)."""

from __future__ import annotations

import base64
import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from apptremind_auth.settings import AuthSettings
from apptremind_devstack.stack import SERVICE_CLIENTS, STREAMS, Layout, Stack, load_or_create_secrets
from apptremind_edge.webhooks import STATUS_PATH
from apptremind_platform.service_credentials import secret_digest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"auth", "business", "booking", "billing", "scheduler", "notification", "analytics"}
PIPELINE = {"smtp-sink", "sms-server", "streams"}
# What the stream worker needs (streams/README.md, notification's channels/README.md).
STREAMS_ENV = {
    "APPTREMIND_DATABASE_URL",
    "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS",
    "APPTREMIND_BOOKING_TARGET",
    "APPTREMIND_SMTP_HOST",
    "APPTREMIND_SMTP_PORT",
    "APPTREMIND_SMS_BASE_URL",
    "APPTREMIND_SMS_AUTH_TOKEN",
    "APPTREMIND_SMS_STATUS_CALLBACK_URL",
    "APPTREMIND_STREAMS_DATA_DIR",
}


# Services that call others on their own behalf, and the processes that use each one's identity.
CALLERS = {"booking": ("booking",), "notification": ("notification", "streams")}


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("**/pyproject.toml"):
        if ".venv" in pyproject.parts:
            continue
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def runnable_module(name: str) -> bool:
    """``python -m name`` runs something: the module exists and has a main guard."""
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        return False
    if spec is None or spec.origin is None:
        return False
    return 'if __name__ == "__main__":' in Path(spec.origin).read_text()


def command_exists(command: list[str], scripts: set[str]) -> bool:
    if command[0] == "python":
        return command[1] == "-m" and runnable_module(command[2])
    return command[0] in scripts


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, Any] = loaded["services"]
    return services


def test_compose_commands_exist(compose: dict[str, Any]) -> None:
    scripts = console_scripts()
    commands = {name: svc["command"] for name, svc in compose.items() if "command" in svc}
    assert commands
    missing = {name: c for name, c in commands.items() if not command_exists(c, scripts)}
    assert missing == {}
    expected = SERVICES | {f"{s}-relay" for s in SERVICES} | {"edge", "bootstrap"} | PIPELINE
    assert expected <= set(compose)


def test_the_command_check_refuses_what_does_not_run() -> None:
    scripts = console_scripts()
    assert not command_exists(["apptremind-nothing"], scripts)
    assert not command_exists(["python", "-m", "apptremind_devstack.no_such_module"], scripts)
    # A library module without a main guard would import and exit 0, doing nothing.
    assert not command_exists(["python", "-m", "apptremind_devstack.ports"], scripts)
    assert command_exists(["python", "-m", "apptremind_devstack.smtp_sink"], scripts)


def test_compose_wires_the_pipeline(compose: dict[str, Any]) -> None:
    streams = compose["streams"]["environment"]
    assert streams.keys() >= STREAMS_ENV | {"APPTREMIND_SMTP_CA_FILE"}
    assert "apptremind_notification" in streams["APPTREMIND_DATABASE_URL"]
    assert (
        streams["APPTREMIND_DATABASE_URL"]
        == compose["notification"]["environment"]["APPTREMIND_DATABASE_URL"]
    )
    booking_port = compose["booking"]["environment"]["APPTREMIND_GRPC_PORT"]
    assert streams["APPTREMIND_BOOKING_TARGET"] == f"booking:{booking_port}"
    assert compose["notification"]["environment"]["APPTREMIND_BOOKING_TARGET"] == f"booking:{booking_port}"

    # The sink's certificate names the host it binds, which must be the host the worker connects to, and
    # lands on a volume the worker mounts.
    sink = compose["smtp-sink"]["command"]
    assert streams["APPTREMIND_SMTP_HOST"] == option(sink, "--host") == "smtp-sink"
    assert streams["APPTREMIND_SMTP_PORT"] == option(sink, "--port")
    cert_dir = option(sink, "--cert-dir")
    assert Path(streams["APPTREMIND_SMTP_CA_FILE"]).parent == Path(cert_dir)
    assert any(v.split(":")[1] == cert_dir for v in compose["smtp-sink"]["volumes"])
    assert any(v.split(":")[1] == cert_dir for v in compose["streams"]["volumes"])

    sms = compose["sms-server"]["command"]
    assert urlsplit(streams["APPTREMIND_SMS_BASE_URL"]).netloc == f"sms-server:{option(sms, '--port')}"
    # One token: the provider signs with it, the edge and notification-service verify with it.
    token = option(sms, "--auth-token")
    assert streams["APPTREMIND_SMS_AUTH_TOKEN"] == token
    assert compose["notification"]["environment"]["APPTREMIND_SMS_AUTH_TOKEN"] == token
    edge = compose["edge"]["environment"]
    assert edge["APPTREMIND_EDGE_SMS_AUTH_TOKEN"] == token
    # The provider posts to the URL the worker hands it; the edge checks the signature over its public base.
    assert (
        streams["APPTREMIND_SMS_STATUS_CALLBACK_URL"] == edge["APPTREMIND_EDGE_PUBLIC_BASE_URL"] + STATUS_PATH
    )
    assert urlsplit(edge["APPTREMIND_EDGE_PUBLIC_BASE_URL"]).netloc == f"edge:{edge['APPTREMIND_EDGE_PORT']}"

    scheduler = compose["scheduler"]["environment"]
    assert int(scheduler["APPTREMIND_DB_POOL_MAX"]) >= int(scheduler["APPTREMIND_SCHEDULER_WORKERS"]) + 4


def test_chart_commands_are_console_scripts() -> None:
    templates = "".join(p.read_text() for p in (ROOT / "charts/apptremind/templates").glob("*.yaml"))
    scripts = console_scripts()
    for name in ("apptremind-relay", "apptremind-edge", "apptremind-stack", "apptremind-streams"):
        assert f'"{name}"' in templates
        assert name in scripts
    values = yaml.safe_load((ROOT / "charts/apptremind/values.yaml").read_text())
    for service in values["services"]:
        assert f"apptremind-{service}" in scripts


def _helm() -> str:
    found = shutil.which("helm") or shutil.which("helm", path=str(Path.home() / "go" / "bin"))
    if found is None:
        pytest.skip("helm is not installed (go install helm.sh/helm/v3/cmd/helm@v3.16.3)")
    return found


def _rendered(*sets: str) -> dict[str, dict[str, Any]]:
    """The chart's Deployments by name, rendered with ``--set`` values."""
    argv = [_helm(), "template", "apptremind", str(ROOT / "charts/apptremind")]
    for value in sets:
        argv += ["--set", value]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") == "Deployment"]
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0] for d in docs}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_chart_runs_the_stream_worker_with_the_pipelines_settings() -> None:
    containers = _rendered("edge.publicBaseUrl=https://book.example.com/", "scheduler.workers=10")
    scripts = console_scripts()
    for name, container in containers.items():
        assert command_exists(container["command"], scripts), name

    streams = _env(containers["streams"])
    assert streams.keys() >= STREAMS_ENV
    assert containers["streams"]["command"][0] == "apptremind-streams"
    assert "/apptremind_notification" in streams["APPTREMIND_DATABASE_URL"]
    assert streams["APPTREMIND_BOOKING_TARGET"] == "booking:50053"
    assert streams["APPTREMIND_SMS_STATUS_CALLBACK_URL"] == "https://book.example.com/webhooks/twilio/status"
    # The root filesystem is read-only: Faust's data directory must be a mounted volume.
    mounts = {m["mountPath"] for m in containers["streams"]["volumeMounts"]}
    assert streams["APPTREMIND_STREAMS_DATA_DIR"] in mounts

    edge = _env(containers["edge"])
    notification = _env(containers["notification"])
    token = streams["APPTREMIND_SMS_AUTH_TOKEN"]
    assert token["secretKeyRef"]["key"] == "sms-auth-token"
    assert edge["APPTREMIND_EDGE_SMS_AUTH_TOKEN"] == token == notification["APPTREMIND_SMS_AUTH_TOKEN"]
    assert edge["APPTREMIND_EDGE_PUBLIC_BASE_URL"] == "https://book.example.com/"
    assert notification["APPTREMIND_BOOKING_TARGET"] == "booking:50053"

    scheduler = _env(containers["scheduler"])
    assert scheduler["APPTREMIND_SCHEDULER_WORKERS"] == "10"
    assert int(scheduler["APPTREMIND_DB_POOL_MAX"]) >= 10 + 4


def test_chart_sends_no_status_callbacks_without_a_public_url() -> None:
    streams = _env(_rendered()["streams"])
    assert streams["APPTREMIND_SMS_STATUS_CALLBACK_URL"] == ""
    assert "APPTREMIND_SMTP_PASSWORD" not in streams
    with_auth = _env(_rendered("providers.smtp.username=mailer")["streams"])
    assert with_auth["APPTREMIND_SMTP_PASSWORD"]["secretKeyRef"]["key"] == "smtp-password"


# -- service credentials (ADR 0013) ---------------------------------------------------------------------


def accepted_hashes(clients: str) -> dict[str, tuple[bytes, ...]]:
    """auth-service's reading of APPTREMIND_AUTH_SERVICE_CLIENTS (refusing what it would refuse at start)."""
    return AuthSettings(auth_service_clients=clients).service_clients


def compose_default(value: str) -> str:
    """The default of a `${VAR:-default}` value, as compose resolves it without the variable set."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    assert match, value
    return match.group(1)


def test_compose_gives_callers_secrets_and_auth_their_hashes(compose: dict[str, Any]) -> None:
    auth_port = compose["auth"]["environment"]["APPTREMIND_GRPC_PORT"]
    hashes = accepted_hashes(
        compose_default(compose["auth"]["environment"]["APPTREMIND_AUTH_SERVICE_CLIENTS"])
    )
    assert set(hashes) == set(CALLERS)
    for client, processes in CALLERS.items():
        secrets = set()
        for process in processes:
            env = compose[process]["environment"]
            assert env["APPTREMIND_SERVICE_NAME"] == client, process
            assert env["APPTREMIND_AUTH_TARGET"] == f"auth:{auth_port}", process
            secrets.add(env["APPTREMIND_SERVICE_CLIENT_SECRET"])
        [secret] = secrets
        assert bytes.fromhex(secret_digest(compose_default(secret))) in hashes[client]
    # Only the callers hold a secret; relays share their service's settings but not its credentials.
    holders = {
        name
        for name, svc in compose.items()
        if "APPTREMIND_SERVICE_CLIENT_SECRET" in svc.get("environment", {})
    }
    assert holders == {p for processes in CALLERS.values() for p in processes}
    for name in SERVICES - {"auth"}:
        assert compose[name]["environment"]["APPTREMIND_AUTH_TARGET"] == f"auth:{auth_port}"


def _rendered_documents(*sets: str) -> list[dict[str, Any]]:
    argv = [_helm(), "template", "apptremind", str(ROOT / "charts/apptremind")]
    for value in sets:
        argv += ["--set", value]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_keeps_client_secrets_in_a_secret_and_gives_auth_their_hashes() -> None:
    old_hash = secret_digest("the-old-booking-secret")
    documents = _rendered_documents(
        "serviceCredentials.secrets.booking=booking-secret-1",
        f"serviceCredentials.extraHashes.booking={old_hash}",
    )
    [secret] = [
        d
        for d in documents
        if d["kind"] == "Secret" and d["metadata"]["name"] == "apptremind-service-credentials"
    ]
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert data["booking-client-secret"] == "booking-secret-1"
    assert len(data["notification-client-secret"]) >= 32  # generated
    hashes = accepted_hashes(data["auth-service-clients"])
    assert hashes == {
        "booking": (bytes.fromhex(secret_digest("booking-secret-1")), bytes.fromhex(old_hash)),
        "notification": (bytes.fromhex(secret_digest(data["notification-client-secret"])),),
    }

    containers = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in documents
        if d["kind"] == "Deployment"
    }
    ref = {"secretKeyRef": {"name": "apptremind-service-credentials", "key": "auth-service-clients"}}
    assert _env(containers["auth"])["APPTREMIND_AUTH_SERVICE_CLIENTS"] == ref
    for client, processes in CALLERS.items():
        for process in processes:
            env = _env(containers[process])
            assert env["APPTREMIND_SERVICE_NAME"] == client, process
            assert env["APPTREMIND_AUTH_TARGET"] == "auth:50051", process
            assert env["APPTREMIND_SERVICE_CLIENT_SECRET"] == {
                "secretKeyRef": {"name": "apptremind-service-credentials", "key": f"{client}-client-secret"}
            }
    holders = {name for name, c in containers.items() if "APPTREMIND_SERVICE_CLIENT_SECRET" in _env(c)}
    assert holders == {p for processes in CALLERS.values() for p in processes}


def test_make_up_gives_callers_secrets_and_auth_their_hashes(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    stack_secrets, _ = load_or_create_secrets(tmp_path / "secrets.json")
    assert set(SERVICE_CLIENTS) == set(CALLERS)
    layout = Layout.from_env({})
    admin_dsn = "postgresql://postgres:pw@127.0.0.1:15432/postgres"
    envs = {c.name: stack._env(c, layout, admin_dsn, stack_secrets) for c in layout.components(edge=True)}
    hashes = accepted_hashes(envs["auth"]["APPTREMIND_AUTH_SERVICE_CLIENTS"])
    assert set(hashes) == set(CALLERS)
    for client, processes in CALLERS.items():
        for process in processes:
            env = envs[process]
            assert env["APPTREMIND_SERVICE_NAME"] == client, process
            assert hashes[client] == (bytes.fromhex(secret_digest(env["APPTREMIND_SERVICE_CLIENT_SECRET"])),)
    holders = {name for name, env in envs.items() if "APPTREMIND_SERVICE_CLIENT_SECRET" in env}
    assert holders == {"booking", "notification", STREAMS}
    # The secrets are generated once and kept, like every other secret of the stack.
    again, _ = load_or_create_secrets(tmp_path / "secrets.json")
    assert again.client_secrets == stack_secrets.client_secrets
    assert stack_secrets.client_secrets["booking"] != stack_secrets.client_secrets["notification"]
