"""The local stack behind ``make up`` / ``make down`` / ``make status``.

Postgres, Kafka, the dev SMTP sink and SMS server, stripe-mock, every service process with its outbox relay, the
reminder pipeline's stream worker, and the GraphQL edge, all on 127.0.0.1 and all remembered in one state
directory (``<repo>/.stack``, or ``$APPTREMIND_STACK_DIR``) so that a later command, from another shell,
can report on them or stop them.

State directory layout::

    stack.json      ports of the stack as launched (read by status, and by up while anything still runs)
    secrets.json    generated database passwords, the SMS account's auth token, the Stripe webhook
                    signing secret and the service clients' secrets, mode 0600, reused
    data/postgres   the Postgres cluster          data/kafka   the Kafka metadata log and topic data
    data/streams    the Faust worker's data dir   smtp-sink/   the SMTP sink's certificate (its own CA)
    mail/           every mail the SMTP sink accepted, one .eml file each
    logs/<name>.log one log per process           <name>.pid / postgres.pgdata   procs.py records
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import secrets
import smtplib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import psycopg

from . import _osproc, procs
from .kafka import REPO_ROOT, KafkaBroker
from .ports import port_open
from .postgres import DSN_ENV, ExternalPostgres, PostgresServer, postgres_from_env, postmaster_pid
from .stripe_mock import stripe_mock_binary

SERVICES: tuple[str, ...] = (
    "auth",
    "business",
    "booking",
    "billing",
    "scheduler",
    "notification",
    "analytics",
)
HOST = "127.0.0.1"
STATE_DIR_ENV = "APPTREMIND_STACK_DIR"
DEFAULT_TIMEOUT_S = 120.0
_GRACE_AFTER_FAILURE_S = 10.0

# Default ports (GUIDE §5); each one is overridable by the environment variable next to it.
PG_PORT = ("APPTREMIND_PG_PORT", 15432)
KAFKA_PORT = ("APPTREMIND_KAFKA_PORT", 19092)
KAFKA_CONTROLLER_PORT = ("APPTREMIND_KAFKA_CONTROLLER_PORT", 19093)
EDGE_PORT = ("APPTREMIND_EDGE_PORT", 8080)
SMTP_SINK_PORT = ("APPTREMIND_SMTP_SINK_PORT", 2525)
SMS_SERVER_PORT = ("APPTREMIND_SMS_SERVER_PORT", 8090)
# stripe-mock's own default port.
STRIPE_MOCK_PORT = ("APPTREMIND_STRIPE_MOCK_PORT", 12111)
GRPC_PORT_BASE = 50051
SIDE_PORT_BASE = 9101
RELAY_PORT_BASE = 9201

POSTGRES = "postgres"
KAFKA = "kafka"
EDGE = "edge"
SMTP_SINK = "smtp-sink"
SMS_SERVER = "sms-server"
STRIPE_MOCK = "stripe-mock"
STREAMS = "streams"
EDGE_MODULE = "apptremind_edge.app"
RELAY_MODULE = "apptremind_platform.relay_cli"
SMTP_SINK_MODULE = "apptremind_devstack.smtp_sink"
SMS_SERVER_MODULE = "apptremind_devstack.sms_server"
# stripe-mock is a Go binary (found by stripe_mock.stripe_mock_binary); the module is what finds it.
STRIPE_MOCK_MODULE = "apptremind_devstack.stripe_mock"
# stripe-mock accepts any test-mode key of letters and digits after sk_test_ and any price id.
STRIPE_MOCK_API_KEY = "sk_test_apptremindDev"
STRIPE_MOCK_PRICES = {"PRO": "price_apptremind_dev_pro", "BUSINESS": "price_apptremind_dev_business"}
STREAMS_MODULE = "apptremind_streams.worker"
# The Faust app id, which is also the worker's Kafka consumer group.
STREAMS_GROUP = "apptremind-streams"
# The service whose database and settings the stream worker shares.
STREAMS_SERVICE = "notification"
# Services that call others on their own behalf (ADR 0013), each with a client secret at auth-service; the
# stream worker uses notification's identity.
SERVICE_CLIENTS: tuple[str, ...] = ("booking", "notification")
# The edge's SMS webhooks (edge/apptremind_edge/webhooks.py).
SMS_STATUS_PATH = "/webhooks/twilio/status"
SMS_INBOUND_PATH = "/webhooks/twilio/inbound"
STRIPE_WEBHOOK_PATH = "/webhooks/stripe"
# Outside the scheduler's worker tasks, the RPCs and the reminder consumer need connections of their own
# (services/scheduler/README.md).
SCHEDULER_POOL_HEADROOM = 4
# Any account id: the SMS server refuses a lookup without credentials before it looks at the account.
SMS_PROBE_ACCOUNT = "AC" + "0" * 32


class StackError(RuntimeError):
    """A problem the user can act on; the CLI prints the message without a traceback."""


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or REPO_ROOT / ".stack").resolve()


def grpc_port_env(service: str) -> str:
    return f"APPTREMIND_{service.upper()}_GRPC_PORT"


def http_port_env(service: str) -> str:
    return f"APPTREMIND_{service.upper()}_HTTP_PORT"


def relay_port_env(service: str) -> str:
    return f"APPTREMIND_{service.upper()}_RELAY_HTTP_PORT"


def _env_port(name: str, default: int, env: Mapping[str, str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{name}={port} is outside 1..65535")
    return port


def scheduler_pool_max(env: Mapping[str, str]) -> int:
    """The scheduler's APPTREMIND_DB_POOL_MAX: the one asked for, raised to its workers plus headroom."""
    values: dict[str, int] = {}
    for name, default in (("APPTREMIND_SCHEDULER_WORKERS", 2), ("APPTREMIND_DB_POOL_MAX", 10)):
        raw = env.get(name, "").strip()
        try:
            values[name] = int(raw) if raw else default
        except ValueError:
            raise StackError(f"{name}={raw!r} is not a number") from None
    return max(
        values["APPTREMIND_DB_POOL_MAX"], values["APPTREMIND_SCHEDULER_WORKERS"] + SCHEDULER_POOL_HEADROOM
    )


def mask_password(dsn: str) -> str:
    """The DSN with its password replaced by ``****`` (it is printed and written to stack.json)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:****@{netloc}"))


# -- what runs where ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One Python process of the stack and its ports.

    Kinds: "service", "relay", "edge" (each with /readyz on ``http_port``), "smtp" (the SMTP sink on
    ``port``), "sms" (the Twilio-shaped API on ``http_port``), "stripe" (stripe-mock, Stripe's API, on
    ``http_port``; a Go binary, not a Python module) and "streams" (the Faust worker: no port).
    """

    name: str  # the record name in the state directory and the log file's stem
    kind: str
    module: str  # run as `python -m <module>`
    http_port: int | None = None  # the side port (the edge serves /healthz, /readyz and /graphql on it)
    service: str | None = None
    grpc_port: int | None = None
    port: int | None = None  # a plain TCP port (SMTP)

    def url(self, path: str) -> str:
        if self.http_port is None:
            raise ValueError(f"{self.name} has no HTTP port")
        return f"http://{HOST}:{self.http_port}{path}"

    @property
    def grpc_target(self) -> str | None:
        return None if self.grpc_port is None else f"{HOST}:{self.grpc_port}"


@dataclass(frozen=True)
class Layout:
    """Every port of one stack; resolved from the environment when the stack starts, then kept in stack.json."""

    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    edge_port: int
    grpc_ports: dict[str, int]
    side_ports: dict[str, int]
    relay_ports: dict[str, int]
    # Defaults only so that a stack.json written before these existed still loads.
    smtp_port: int = SMTP_SINK_PORT[1]
    sms_port: int = SMS_SERVER_PORT[1]
    stripe_port: int = STRIPE_MOCK_PORT[1]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Layout:
        layout = cls(
            pg_port=_env_port(*PG_PORT, env),
            kafka_port=_env_port(*KAFKA_PORT, env),
            kafka_controller_port=_env_port(*KAFKA_CONTROLLER_PORT, env),
            edge_port=_env_port(*EDGE_PORT, env),
            grpc_ports={
                s: _env_port(grpc_port_env(s), GRPC_PORT_BASE + i, env) for i, s in enumerate(SERVICES)
            },
            side_ports={
                s: _env_port(http_port_env(s), SIDE_PORT_BASE + i, env) for i, s in enumerate(SERVICES)
            },
            relay_ports={
                s: _env_port(relay_port_env(s), RELAY_PORT_BASE + i, env) for i, s in enumerate(SERVICES)
            },
            smtp_port=_env_port(*SMTP_SINK_PORT, env),
            sms_port=_env_port(*SMS_SERVER_PORT, env),
            stripe_port=_env_port(*STRIPE_MOCK_PORT, env),
        )
        ports = layout.all_ports()
        duplicates = sorted({p for p in ports if ports.count(p) > 1})
        if duplicates:
            raise StackError(f"port(s) {duplicates} assigned twice: check the APPTREMIND_*_PORT variables")
        return layout

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layout:
        return cls(**data)

    def all_ports(self) -> list[int]:
        return [
            self.pg_port,
            self.kafka_port,
            self.kafka_controller_port,
            self.edge_port,
            *self.grpc_ports.values(),
            *self.side_ports.values(),
            *self.relay_ports.values(),
            self.smtp_port,
            self.sms_port,
            self.stripe_port,
        ]

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    def service_targets(self) -> str:
        """The edge's APPTREMIND_SERVICE_TARGETS: ``auth=127.0.0.1:50051,business=...``."""
        return ",".join(f"{s}={HOST}:{self.grpc_ports[s]}" for s in SERVICES)

    def grpc_target(self, service: str) -> str:
        return f"{HOST}:{self.grpc_ports[service]}"

    @property
    def edge_url(self) -> str:
        return f"http://{HOST}:{self.edge_port}"

    @property
    def sms_base_url(self) -> str:
        return f"http://{HOST}:{self.sms_port}"

    @property
    def stripe_base_url(self) -> str:
        return f"http://{HOST}:{self.stripe_port}"

    def components(self, *, edge: bool) -> list[Component]:
        """Launch order: the SMTP sink, SMS server and stripe-mock (the providers), each service followed by
        its relay, the stream worker, the edge last (``down`` stops in reverse)."""
        found: list[Component] = [
            Component(name=SMTP_SINK, kind="smtp", module=SMTP_SINK_MODULE, port=self.smtp_port),
            Component(name=SMS_SERVER, kind="sms", module=SMS_SERVER_MODULE, http_port=self.sms_port),
            Component(name=STRIPE_MOCK, kind="stripe", module=STRIPE_MOCK_MODULE, http_port=self.stripe_port),
        ]
        for service in SERVICES:
            found.append(
                Component(
                    name=service,
                    kind="service",
                    module=f"apptremind_{service}.bootstrap",
                    http_port=self.side_ports[service],
                    service=service,
                    grpc_port=self.grpc_ports[service],
                )
            )
            found.append(
                Component(
                    name=f"{service}-relay",
                    kind="relay",
                    module=RELAY_MODULE,
                    http_port=self.relay_ports[service],
                    service=service,
                )
            )
        found.append(Component(name=STREAMS, kind="streams", module=STREAMS_MODULE, service=STREAMS_SERVICE))
        if edge:
            found.append(Component(name=EDGE, kind="edge", module=EDGE_MODULE, http_port=self.edge_port))
        return found


class StateDir:
    """Paths inside the state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def postgres_data(self) -> Path:
        return self.root / "data" / "postgres"

    @property
    def kafka_data(self) -> Path:
        return self.root / "data" / "kafka"

    @property
    def streams_data(self) -> Path:
        return self.root / "data" / "streams"

    @property
    def smtp_cert_dir(self) -> Path:
        return self.root / "smtp-sink"

    @property
    def smtp_ca_file(self) -> Path:
        # The name SmtpSink gives the self-signed certificate it writes into its cert dir at start.
        return self.smtp_cert_dir / "smtp-sink.crt"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def read_stack(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.stack_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data


# -- databases and topics -----------------------------------------------------------------------------


def prepare_databases(
    admin_dsn: str,
    runtime_passwords: Mapping[str, str],
    migrator_passwords: Mapping[str, str],
    bootstrap_servers: str,
    say: Callable[[str], None],
) -> None:
    """Each service's database, roles and migrations, then every Kafka topic (all idempotent)."""
    from apptremind_platform.db_bootstrap import ServiceDatabase, bootstrap_service_database
    from apptremind_platform.migrations import apply_migrations
    from apptremind_platform.topics import ensure_topics

    for service in SERVICES:
        module_name = f"apptremind_{service}.bootstrap"
        if not _module_exists(module_name):
            continue
        sql_dir: Path | None = importlib.import_module(module_name).SPEC.sql_dir
        db = ServiceDatabase(service, runtime_passwords[service], migrator_passwords[service])
        bootstrap_service_database(admin_dsn, db)
        applied = apply_migrations(db.migrator_dsn(admin_dsn), sql_dir)
        say(f"database {db.database}: {len(applied)} migration(s) applied")
    created = ensure_topics(bootstrap_servers)
    say(f"Kafka topics: {len(created)} created")


def bootstrap_from_env(env: Mapping[str, str] = os.environ) -> int:
    """`apptremind-stack bootstrap`: prepare an existing Postgres and Kafka (docker compose, a Helm hook).

    Reads APPTREMIND_PG_DSN (an admin DSN), APPTREMIND_KAFKA_BOOTSTRAP_SERVERS, and each service's runtime
    password from APPTREMIND_<SERVICE>_DB_PASSWORD, else APPTREMIND_DB_PASSWORD. Migrator passwords are
    rotated on every run: only this command uses those roles.
    """
    admin_dsn = env.get("APPTREMIND_PG_DSN")
    if not admin_dsn:
        raise StackError("APPTREMIND_PG_DSN (an admin DSN) is required")
    runtime: dict[str, str] = {}
    for service in SERVICES:
        password = env.get(f"APPTREMIND_{service.upper()}_DB_PASSWORD") or env.get("APPTREMIND_DB_PASSWORD")
        if not password:
            raise StackError(f"set APPTREMIND_{service.upper()}_DB_PASSWORD or APPTREMIND_DB_PASSWORD")
        runtime[service] = password
    prepare_databases(
        admin_dsn,
        runtime,
        {service: _new_password() for service in SERVICES},
        env.get("APPTREMIND_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        print,
    )
    return 0


# -- secrets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    postgres_password: str
    runtime_passwords: dict[str, str]
    migrator_passwords: dict[str, str]
    # The dev SMS account's auth token: the SMS server checks API calls and signs webhooks with it, the
    # stream worker sends with it, the edge and notification-service verify webhooks with it.
    sms_auth_token: str
    # The Stripe webhook endpoint's signing secret (whsec_...): the edge and billing-service verify with it.
    stripe_webhook_secret: str = ""
    # Each SERVICE_CLIENTS service's client secret: the service (and the stream worker, notification's)
    # gets its own, auth-service only the SHA-256 of each.
    client_secrets: dict[str, str] = field(default_factory=dict)

    def service_clients(self) -> str:
        """auth-service's APPTREMIND_AUTH_SERVICE_CLIENTS: ``booking:<sha256 hex>,notification:...``."""
        from apptremind_platform.service_credentials import secret_digest

        return ",".join(
            f"{name}:{secret_digest(secret)}" for name, secret in sorted(self.client_secrets.items())
        )


def _new_password() -> str:
    # Hex only: db_bootstrap puts passwords into DSNs without URL-quoting them.
    return secrets.token_hex(20)


def load_or_create_secrets(path: Path) -> tuple[Secrets, bool]:
    """Read secrets.json, adding any password still missing; returns the secrets and whether the file is new."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        created = False
    except FileNotFoundError:
        data = {}
        created = True
    changed = created
    for key in ("postgres_password", "sms_auth_token"):
        if not data.get(key):
            data[key] = _new_password()
            changed = True
    if not data.get("stripe_webhook_secret"):
        data["stripe_webhook_secret"] = "whsec_" + _new_password()
        changed = True
    for key, names in (
        ("runtime_passwords", SERVICES),
        ("migrator_passwords", SERVICES),
        ("client_secrets", SERVICE_CLIENTS),
    ):
        passwords: dict[str, str] = data.setdefault(key, {})
        for name in names:
            if not passwords.get(name):
                passwords[name] = _new_password()
                changed = True
    if changed:
        # Written 0600 from the first byte (never world-readable, even briefly), then renamed into place.
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        tmp.replace(path)
    return (
        Secrets(
            data["postgres_password"],
            dict(data["runtime_passwords"]),
            dict(data["migrator_passwords"]),
            data["sms_auth_token"],
            data["stripe_webhook_secret"],
            {name: data["client_secrets"][name] for name in SERVICE_CLIENTS},
        ),
        created,
    )


# -- probes -------------------------------------------------------------------------------------------


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def grpc_health(target: str, timeout: float = 1.0) -> str:
    """The standard gRPC health status of the whole server (service ``""``), e.g. ``SERVING``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            return f"unreachable ({exc.code().name})"
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return name


def smtp_ready(port: int, timeout: float = 2.0) -> tuple[bool, str]:
    """An SMTP greeting and a NOOP answered 250, and STARTTLS offered (the stream worker requires it)."""
    try:
        with smtplib.SMTP(HOST, port, timeout=timeout) as client:
            client.ehlo()
            if not client.has_extn("starttls"):
                return False, "STARTTLS not offered"
            code, _ = client.noop()
    except (OSError, smtplib.SMTPException) as exc:
        return False, f"no SMTP answer: {type(exc).__name__}"
    return (True, "ready") if code == 250 else (False, f"NOOP answered {code}")


def sms_api_ready(base_url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """The server answers a message lookup without credentials with Twilio's 401 error JSON (code 20003)."""
    url = f"{base_url}/2010-04-01/Accounts/{SMS_PROBE_ACCOUNT}/Messages/SM0.json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return False, f"an unauthenticated lookup answered {response.status}"
    except urllib.error.HTTPError as exc:
        try:
            code = json.loads(exc.read()).get("code")
        except ValueError:
            code = None
        if exc.code == 401 and code == 20003:
            return True, "ready"
        return False, f"answers {exc.code} (Twilio code {code})"
    except (OSError, ValueError):
        return False, "no answer"


def stripe_api_ready(base_url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """stripe-mock answers an authenticated list of customers with 200."""
    request = urllib.request.Request(
        f"{base_url}/v1/customers", headers={"Authorization": f"Bearer {STRIPE_MOCK_API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        return False, f"answers {exc.code}"
    except (OSError, ValueError):
        return False, "no answer"
    return (True, "ready") if status == 200 else (False, f"answers {status}")


def consumer_group_state(bootstrap_servers: str, group: str, timeout: float = 3.0) -> str:
    """The Kafka consumer group's state, e.g. ``STABLE`` or ``EMPTY`` (no member)."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print every failed connect to our stdout.
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        [description] = admin.describe_consumer_groups([group], request_timeout=timeout).values()
        name: str = description.result(timeout=timeout).state.name
    except Exception as exc:  # KafkaException carries the librdkafka reason
        return f"unknown ({exc})"
    return name


def probe(component: Component, bootstrap_servers: str) -> tuple[bool, str]:
    """Whether a component is ready, and a short word on why not (its process is known to be alive)."""
    if component.kind == "smtp":
        assert component.port is not None
        return smtp_ready(component.port)
    if component.kind == "sms":
        return sms_api_ready(component.url(""))
    if component.kind == "stripe":
        return stripe_api_ready(component.url(""))
    if component.kind == "streams":
        # The worker serves no port; a member of its group that got its partitions is the best sign of life.
        state = consumer_group_state(bootstrap_servers, STREAMS_GROUP)
        return (True, "ready") if state == "STABLE" else (False, f"consumer group {state}")
    status = http_status(component.url("/readyz"))
    if status != 200:
        return False, "no answer on /readyz" if status is None else f"/readyz answers {status}"
    if component.grpc_target is not None:
        health = grpc_health(component.grpc_target)
        if health != "SERVING":
            return False, f"gRPC health {health}"
    return True, "ready"


# -- the stack ----------------------------------------------------------------------------------------


class Stack:
    """``up``, ``down`` and ``status`` of the stack remembered in one state directory."""

    def __init__(self, state_dir: Path | None = None, out: TextIO | None = None) -> None:
        self.state = StateDir(state_dir or default_state_dir())
        self.out = out or sys.stdout

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    # -- up -------------------------------------------------------------------------------------------

    def up(self, timeout: float = DEFAULT_TIMEOUT_S) -> int:
        """Start whatever is not running yet, wait until everything is healthy, print the addresses."""
        began = time.monotonic()
        root = self.state.root
        if not root.is_dir():
            # Private: it holds secrets.json. Only on creation, because postgres.py later adds o+x (search
            # only) so that its unprivileged server user can reach the cluster inside.
            root.mkdir(parents=True, mode=0o700)
        running = procs.running(root)
        stored = self.state.read_stack()
        # While anything of a previous `up` still runs, its ports win over the current environment:
        # otherwise a changed variable would start a second copy beside the first.
        layout = Layout.from_json(stored["layout"]) if running and stored else Layout.from_env()
        stack_secrets, secrets_created = load_or_create_secrets(self.state.secrets_file)
        postgres = postgres_from_env(
            self.state.postgres_data,
            layout.pg_port,
            self.state.log(POSTGRES),
            durable=True,
            password=stack_secrets.postgres_password,
        )
        if (
            secrets_created
            and isinstance(postgres, PostgresServer)
            and (postgres.pgdata / "PG_VERSION").exists()
        ):
            raise StackError(
                f"{self.state.secrets_file} was missing but {postgres.pgdata} exists, so its superuser "
                f"password is unknown: delete {root} (the stack's data) and run `make up` again"
            )

        components = self._launchable(layout)
        pg_running = not isinstance(postgres, PostgresServer) or postgres.pid is not None
        to_start = [c for c in components if c.name not in running]
        if pg_running and KAFKA in running and not to_start:
            self.say(f"The stack in {root} is already running; checking health.")
            return self._finish(layout, postgres, components, began, timeout, cold=False)

        self._check_ports_free(layout, postgres, running, to_start)
        self._write_stack_file(layout, postgres, components)

        if isinstance(postgres, PostgresServer) and postgres.pid is None:
            self.say(f"starting Postgres on {HOST}:{layout.pg_port} ...")
            postgres.start(timeout=60)
            procs.record_postgres(root, POSTGRES, postgres.pgdata)
        elif isinstance(postgres, ExternalPostgres):
            self.say(f"using the Postgres named by {DSN_ENV}")
            postgres.start(timeout=10)
        if KAFKA not in running:
            self.say(f"starting Kafka on {layout.bootstrap_servers} ...")
            broker = KafkaBroker(
                self.state.kafka_data,
                layout.kafka_port,
                layout.kafka_controller_port,
                self.state.log(KAFKA),
            )
            broker.start(timeout=90)
            assert broker.pid is not None
            procs.record_process(root, KAFKA, broker.pid)

        admin_dsn = postgres.dsn("postgres")
        self._prepare_databases(admin_dsn, stack_secrets, layout)

        started = {c.name for c in to_start}
        if SMTP_SINK in started and STREAMS in running:
            self.say(
                f"note: the running {STREAMS} worker trusts the SMTP sink's previous certificate; "
                "`make down && make up` restarts both"
            )
        for component in to_start:
            procs.start_process(
                component.name,
                self._argv(component, stack_secrets),
                self._env(component, layout, admin_dsn, stack_secrets),
                self.state.log(component.name),
                root,
                cwd=REPO_ROOT,
            )
        self.say(f"started {len(to_start)} process(es): {', '.join(c.name for c in to_start)}")
        return self._finish(layout, postgres, components, began, timeout, cold=True)

    def _launchable(self, layout: Layout) -> list[Component]:
        """The components whose module is installed; the others are skipped, with a word."""
        edge = _module_exists(EDGE_MODULE)
        if not edge:
            self.say(f"skipping the GraphQL edge: module {EDGE_MODULE} is not importable")
        found = []
        for component in layout.components(edge=edge):
            if component.kind == "stripe" and stripe_mock_binary() is None:
                self.say(
                    f"skipping {STRIPE_MOCK}: not installed (go install github.com/stripe/stripe-mock@latest); "
                    "billing's Stripe calls will fail until it runs"
                )
                continue
            # A relay drains its service's outbox, which exists only once the service's migrations ran.
            needed = [component.module]
            if component.service is not None:
                needed.append(f"apptremind_{component.service}.bootstrap")
            missing = [m for m in needed if not _module_exists(m)]
            if missing:
                self.say(f"skipping {component.name}: module {missing[0]} is not importable")
                continue
            found.append(component)
        return found

    def _argv(self, component: Component, stack_secrets: Secrets) -> list[str]:
        if component.kind == "stripe":
            binary = stripe_mock_binary()
            if binary is None:
                raise StackError(
                    "stripe-mock is not installed: go install github.com/stripe/stripe-mock@latest"
                )
            # An explicit HTTPS address too: by default stripe-mock also binds 12112, which may be taken.
            return [binary, "-http-addr", f"{HOST}:{component.http_port}", "-https-addr", f"{HOST}:"]
        argv = [sys.executable, "-m", component.module]
        if component.kind == "smtp":
            assert component.port is not None
            # A certificate is made at every start; the stream worker trusts it through its CA file.
            argv += [
                "--port",
                str(component.port),
                "--cert-dir",
                str(self.state.smtp_cert_dir),
                "--eml-dir",
                str(self.state.mail_dir),
            ]
        elif component.kind == "sms":
            assert component.http_port is not None
            argv += ["--port", str(component.http_port), "--auth-token", stack_secrets.sms_auth_token]
        elif component.kind == "streams":
            # `faust worker` starts its web server on 0.0.0.0:6066 even with web_enabled=False; the
            # agents need none, and a second worker on the machine (a test run) would fail to bind it.
            argv.append("--without-web")
        return argv

    def _check_ports_free(
        self,
        layout: Layout,
        postgres: PostgresServer | ExternalPostgres,
        running: Mapping[str, int],
        to_start: list[Component],
    ) -> None:
        # Fail before launching anything: a port taken by something else would otherwise show up as a
        # process that dies with a bind error after half the stack is already running.
        wanted: list[tuple[int, str]] = []
        if isinstance(postgres, PostgresServer) and postgres.pid is None:
            wanted.append((layout.pg_port, PG_PORT[0]))
        if KAFKA not in running:
            wanted += [
                (layout.kafka_port, KAFKA_PORT[0]),
                (layout.kafka_controller_port, KAFKA_CONTROLLER_PORT[0]),
            ]
        for component in to_start:
            if component.kind == "edge":
                assert component.http_port is not None
                wanted.append((component.http_port, EDGE_PORT[0]))
                continue
            if component.kind == "smtp":
                assert component.port is not None
                wanted.append((component.port, SMTP_SINK_PORT[0]))
                continue
            if component.kind == "sms":
                assert component.http_port is not None
                wanted.append((component.http_port, SMS_SERVER_PORT[0]))
                continue
            if component.kind == "stripe":
                assert component.http_port is not None
                wanted.append((component.http_port, STRIPE_MOCK_PORT[0]))
                continue
            if component.kind == "streams":
                continue
            assert component.service is not None
            assert component.http_port is not None
            if component.kind == "service":
                assert component.grpc_port is not None
                wanted.append((component.grpc_port, grpc_port_env(component.service)))
                wanted.append((component.http_port, http_port_env(component.service)))
            else:
                wanted.append((component.http_port, relay_port_env(component.service)))
        taken = [f"  {port:<6} {env}" for port, env in wanted if port_open(HOST, port)]
        if taken:
            raise StackError(
                f"port(s) already in use on {HOST} (another stack? `make status` shows this one); "
                "free them or move each with its variable:\n" + "\n".join(taken)
            )

    def _write_stack_file(
        self, layout: Layout, postgres: PostgresServer | ExternalPostgres, components: list[Component]
    ) -> None:
        data = {
            "layout": asdict(layout),
            "postgres_admin_dsn": mask_password(postgres.dsn("postgres")),
            "postgres_external": isinstance(postgres, ExternalPostgres),
            "components": [asdict(c) for c in components],
        }
        self.state.stack_file.write_text(json.dumps(data, indent=2) + "\n")

    def _prepare_databases(self, admin_dsn: str, stack_secrets: Secrets, layout: Layout) -> None:
        prepare_databases(
            admin_dsn,
            stack_secrets.runtime_passwords,
            stack_secrets.migrator_passwords,
            layout.bootstrap_servers,
            self.say,
        )

    def _env(
        self, component: Component, layout: Layout, admin_dsn: str, stack_secrets: Secrets
    ) -> dict[str, str]:
        # Unbuffered, so a log tail printed after a crash holds the last lines the process wrote.
        env = {
            "PYTHONUNBUFFERED": "1",
            "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap_servers,
            # Where every service fetches the signing keys that verify access tokens.
            "APPTREMIND_AUTH_TARGET": f"127.0.0.1:{layout.grpc_ports['auth']}",
        }
        if component.kind in ("smtp", "sms", "stripe"):
            return env
        if component.kind == "edge":
            env |= {
                "APPTREMIND_EDGE_PORT": str(component.http_port),
                "APPTREMIND_SERVICE_TARGETS": layout.service_targets(),
                # The SMS server signs its webhooks over the URL it posts to, which is the edge itself.
                "APPTREMIND_EDGE_SMS_AUTH_TOKEN": stack_secrets.sms_auth_token,
                "APPTREMIND_EDGE_PUBLIC_BASE_URL": layout.edge_url,
                "APPTREMIND_EDGE_STRIPE_WEBHOOK_SECRET": stack_secrets.stripe_webhook_secret,
            }
            return env
        from apptremind_platform.db_bootstrap import ServiceDatabase

        assert component.service is not None
        db = ServiceDatabase(
            component.service,
            stack_secrets.runtime_passwords[component.service],
            stack_secrets.migrator_passwords[component.service],
        )
        env["APPTREMIND_DATABASE_URL"] = db.runtime_dsn(admin_dsn)
        if component.kind == "streams":
            return env | self._streams_env(layout, stack_secrets)
        env |= {
            "APPTREMIND_SERVICE_NAME": component.service,
            "APPTREMIND_GRPC_HOST": HOST,
            "APPTREMIND_HTTP_PORT": str(component.http_port),
        }
        if component.grpc_port is not None:
            env["APPTREMIND_GRPC_PORT"] = str(component.grpc_port)
        if component.kind == "service":
            env |= self._credentials_env(component.service, stack_secrets)
        if component.kind == "service" and component.service == "notification":
            env |= {
                "APPTREMIND_BOOKING_TARGET": layout.grpc_target("booking"),
                "APPTREMIND_SMS_AUTH_TOKEN": stack_secrets.sms_auth_token,
            }
        if component.kind == "service" and component.service == "business":
            # CreateStaff asks billing for a staff seat.
            env["APPTREMIND_BILLING_TARGET"] = layout.grpc_target("billing")
        if component.kind == "service" and component.service == "booking":
            # Deposits (the paid booking saga) are authorised by billing.
            env["APPTREMIND_BOOKING_BILLING_TARGET"] = layout.grpc_target("billing")
        if component.kind == "service" and component.service == "billing":
            env |= {
                "APPTREMIND_STRIPE_API_KEY": STRIPE_MOCK_API_KEY,
                "APPTREMIND_STRIPE_API_BASE": layout.stripe_base_url,
                "APPTREMIND_STRIPE_WEBHOOK_SECRET": stack_secrets.stripe_webhook_secret,
                "APPTREMIND_STRIPE_PRICE_PRO": STRIPE_MOCK_PRICES["PRO"],
                "APPTREMIND_STRIPE_PRICE_BUSINESS": STRIPE_MOCK_PRICES["BUSINESS"],
                "APPTREMIND_BILLING_RETURN_URL": f"{layout.edge_url}/billing",
            }
        if component.kind == "service" and component.service == "scheduler":
            env["APPTREMIND_DB_POOL_MAX"] = str(scheduler_pool_max(os.environ))
        return env

    @staticmethod
    def _credentials_env(service: str, stack_secrets: Secrets) -> dict[str, str]:
        """auth-service's list of client hashes, or a calling service's identity and client secret."""
        if service == "auth":
            return {"APPTREMIND_AUTH_SERVICE_CLIENTS": stack_secrets.service_clients()}
        secret = stack_secrets.client_secrets.get(service)
        if not secret:
            return {}
        # The client id is the service name, which the stream worker takes from notification.
        return {"APPTREMIND_SERVICE_NAME": service, "APPTREMIND_SERVICE_CLIENT_SECRET": secret}

    def _streams_env(self, layout: Layout, stack_secrets: Secrets) -> dict[str, str]:
        """The stream worker's settings: notification's (its database is set by the caller), the providers
        of this stack, and a Faust data directory inside the state directory."""
        from .sms_server import DEFAULT_ACCOUNT_SID

        self.state.streams_data.mkdir(parents=True, exist_ok=True)
        # Without the edge nothing could receive the SMS server's status callbacks.
        callback = f"{layout.edge_url}{SMS_STATUS_PATH}" if _module_exists(EDGE_MODULE) else ""
        return self._credentials_env(STREAMS_SERVICE, stack_secrets) | {
            "APPTREMIND_BOOKING_TARGET": layout.grpc_target("booking"),
            # SMS reminders hold a credit of the plan's SMS quota at billing.
            "APPTREMIND_BILLING_TARGET": layout.grpc_target("billing"),
            "APPTREMIND_SMTP_HOST": HOST,
            "APPTREMIND_SMTP_PORT": str(layout.smtp_port),
            "APPTREMIND_SMTP_CA_FILE": str(self.state.smtp_ca_file),
            "APPTREMIND_SMS_BASE_URL": layout.sms_base_url,
            "APPTREMIND_SMS_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "APPTREMIND_SMS_AUTH_TOKEN": stack_secrets.sms_auth_token,
            "APPTREMIND_SMS_STATUS_CALLBACK_URL": callback,
            "APPTREMIND_STREAMS_APP_ID": STREAMS_GROUP,
            "APPTREMIND_STREAMS_DATA_DIR": str(self.state.streams_data),
        }

    def _finish(
        self,
        layout: Layout,
        postgres: PostgresServer | ExternalPostgres,
        components: list[Component],
        began: float,
        timeout: float,
        *,
        cold: bool,
    ) -> int:
        failures = self._wait_healthy(components, layout, began + timeout, progress=cold)
        if failures:
            for component, reason in failures:
                log = self.state.log(component.name)
                self.say(f"\n{component.name} is not healthy: {reason}. Last lines of {log}:")
                self.say(_osproc.tail(log, 40))
            self.say(
                f"\n{len(failures)} process(es) not healthy after {time.monotonic() - began:.1f} s. "
                "Everything is left running for inspection; `make down` stops it."
            )
            return 1
        word = "up" if cold else "already up"
        self.say(
            f"\nApptRemind local stack is {word}: every process is healthy ({time.monotonic() - began:.1f} s).\n"
        )
        self._print_table(layout, postgres, components)
        return 0

    def _wait_healthy(
        self, components: list[Component], layout: Layout, deadline: float, *, progress: bool
    ) -> list[tuple[Component, str]]:
        pending = {c.name: c for c in components}
        reasons = dict.fromkeys(pending, "not checked yet")
        failures: list[tuple[Component, str]] = []
        started = time.monotonic()
        while pending:
            alive = procs.running(self.state.root)
            for name, component in list(pending.items()):
                if name not in alive:
                    del pending[name]
                    failures.append((component, "the process exited"))
                    # Others may be about to fail the same way (a shared bug): give them a short while
                    # so one report shows every casualty, but do not sit out the whole timeout.
                    deadline = min(deadline, time.monotonic() + _GRACE_AFTER_FAILURE_S)
                    continue
                ready, reasons[name] = probe(component, layout.bootstrap_servers)
                if ready:
                    del pending[name]
                    if progress:
                        self.say(f"  ready: {name:<22} after {time.monotonic() - started:5.1f} s")
            if pending and time.monotonic() >= deadline:
                failures += [(c, reasons[c.name]) for c in pending.values()]
                break
            if pending:
                time.sleep(0.25)
        return failures

    def _print_table(
        self, layout: Layout, postgres: PostgresServer | ExternalPostgres, components: list[Component]
    ) -> None:
        rows: list[tuple[str, str, str]] = [
            (POSTGRES, "admin DSN", mask_password(postgres.dsn("postgres"))),
            (KAFKA, "bootstrap", layout.bootstrap_servers),
        ]
        for component in components:
            if component.kind == "service":
                rows += [
                    (component.name, "gRPC", f"{component.grpc_target}"),
                    (component.name, "healthz", component.url("/healthz")),
                    (component.name, "readyz", component.url("/readyz")),
                    (component.name, "metrics", component.url("/metrics")),
                ]
            elif component.kind == "relay":
                rows.append((component.name, "metrics", component.url("/metrics")))
            elif component.kind == "smtp":
                rows += [
                    (component.name, "SMTP+STARTTLS", f"{HOST}:{component.port}"),
                    (component.name, "CA file", str(self.state.smtp_ca_file)),
                    (component.name, "mail", f"{self.state.mail_dir}/*.eml"),
                ]
            elif component.kind == "sms":
                rows.append((component.name, "Twilio API", component.url("/2010-04-01")))
            elif component.kind == "stripe":
                rows.append((component.name, "Stripe API", component.url("/v1")))
            elif component.kind == "streams":
                rows.append(
                    (component.name, "consumer group", f"{STREAMS_GROUP} on {layout.bootstrap_servers}")
                )
            else:
                rows += [
                    (component.name, "GraphQL", component.url("/graphql")),
                    (component.name, "healthz", component.url("/healthz")),
                    (component.name, "readyz", component.url("/readyz")),
                    (component.name, "SMS status", component.url(SMS_STATUS_PATH)),
                    (component.name, "SMS replies", component.url(SMS_INBOUND_PATH)),
                    (component.name, "Stripe webhooks", component.url(STRIPE_WEBHOOK_PATH)),
                ]
        rows += [
            ("logs", "directory", str(self.state.logs)),
            (
                "secrets",
                "file",
                f"{self.state.secrets_file} (DB passwords, SMS auth token, Stripe webhook secret, "
                "service client secrets)",
            ),
        ]
        self._table(("COMPONENT", "WHAT", "ADDRESS"), rows)
        scheduler = next((c for c in components if c.name == "scheduler"), None)
        if scheduler is not None:
            self.say(f"\ntry:  grpcurl -plaintext {scheduler.grpc_target} list")
        self.say("stop: make down    status: make status")

    def _table(self, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    # -- down -----------------------------------------------------------------------------------------

    def down(self) -> int:
        """Stop every recorded process, newest first, and prove none survives."""
        root = self.state.root
        records = procs.records(root)
        if not records:
            self.say(f"nothing to stop: no process is recorded in {root}")
            return 0
        # Captured before stopping: stop_all deletes the records, and the postmaster's pid is in pgdata.
        watched = {
            r.name: (postmaster_pid(r.pgdata) if r.pgdata is not None else r.pid, r.start_time)
            for r in records
        }
        try:
            stopped = procs.stop_all(root)
        except RuntimeError as exc:
            self.say(f"stopping failed: {exc}")
            return 1
        survivors = [
            f"{name} (pid {pid})"
            for name, (pid, started) in watched.items()
            if pid is not None
            and _osproc.pid_alive(pid)
            and (started is None or _osproc.start_time(pid) == started)
        ]
        if survivors:
            self.say(f"still alive after stopping: {', '.join(survivors)}")
            return 1
        self.say(f"stopped {len(stopped)} process(es): {', '.join(stopped) or '-'}")
        self.say(f"no recorded process survives; data is kept in {root / 'data'} for the next `make up`")
        return 0

    # -- status ---------------------------------------------------------------------------------------

    def status(self) -> int:
        """Each recorded component: its pid, whether it is alive, whether it is ready.

        Exits 0 when everything is ready or nothing runs at all, 1 when the stack is partly up or unhealthy.
        """
        root = self.state.root
        stored = self.state.read_stack()
        records = {r.name: r for r in procs.records(root)}
        if stored is None and not records:
            self.say(f"the stack is not running (nothing recorded in {root}); `make up` starts it")
            return 0
        layout = Layout.from_json(stored["layout"]) if stored else Layout.from_env()
        components = [Component(**c) for c in stored["components"]] if stored else []
        rows: list[tuple[str, str, str, str, str]] = []
        healthy = True

        def add(name: str, address: str, check: Callable[[], tuple[bool, str]]) -> None:
            nonlocal healthy
            record = records.get(name)
            if record is None:
                pid, alive = None, False
            elif record.pgdata is not None:
                pid = postmaster_pid(record.pgdata)
                alive = pid is not None
            else:
                pid, alive = record.pid, record.alive()
            ready, detail = check() if alive else (False, "-")
            healthy = healthy and ready
            state = "alive" if alive else ("stopped" if record is None else "dead")
            rows.append(
                (name, "-" if pid is None else str(pid), state, "ready" if ready else detail, address)
            )

        external = bool(stored and stored.get("postgres_external"))
        if external:
            rows.append((POSTGRES, "-", "external", "-", stored["postgres_admin_dsn"] if stored else ""))
        else:
            add(POSTGRES, f"{HOST}:{layout.pg_port}", lambda: self._postgres_ready(layout))
        add(KAFKA, layout.bootstrap_servers, lambda: _kafka_ready(layout.bootstrap_servers))
        for component in components:
            add(
                component.name,
                _address(component, layout),
                functools.partial(probe, component, layout.bootstrap_servers),
            )
        self._table(("COMPONENT", "PID", "PROCESS", "READY", "ADDRESS"), rows)
        self.say(f"\nlogs: {self.state.logs}")
        if not records:
            self.say("the stack is not running; `make up` starts it")
            return 0
        return 0 if healthy else 1

    def _postgres_ready(self, layout: Layout) -> tuple[bool, str]:
        try:
            stack_secrets = json.loads(self.state.secrets_file.read_text())
            dsn = (
                f"postgresql://postgres:{stack_secrets['postgres_password']}@{HOST}:{layout.pg_port}/postgres"
            )
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except (OSError, KeyError, ValueError, psycopg.Error) as exc:
            return False, f"no login: {type(exc).__name__}"
        return True, "ready"


def _address(component: Component, layout: Layout) -> str:
    """The one address `status` shows for a component."""
    if component.grpc_target is not None:
        return component.grpc_target
    if component.kind == "smtp":
        return f"smtp://{HOST}:{component.port}"
    if component.kind in ("sms", "stripe"):
        return component.url("")
    if component.kind == "streams":
        return f"group {STREAMS_GROUP}"
    return component.url("/graphql" if component.kind == "edge" else "/metrics")


def _kafka_ready(bootstrap_servers: str) -> tuple[bool, str]:
    if not port_open(HOST, int(bootstrap_servers.rsplit(":", 1)[1])):
        return False, "port closed"
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print every failed connect to our stdout.
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        admin.list_topics(timeout=3)
    except Exception as exc:  # KafkaException carries the librdkafka reason
        return False, f"no metadata: {exc}"
    return True, "ready"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        # find_spec imports the parent package, which may itself be missing or broken.
        return False
