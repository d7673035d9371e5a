"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) without Docker.

The broker jars are pinned in ``tools/kafka/pom.xml`` and fetched from Maven Central with
``mvn dependency:copy-dependencies`` into a git-ignored cache (``<repo>/.cache/kafka-<version>``, or
``$APPTREMIND_CACHE_DIR/kafka-<version>``). The broker runs on the machine's Java 17 as a child process in its
own session, so it can be stopped as a whole process group and survives the launcher when ``make up`` returns.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from confluent_kafka.admin import AdminClient

from . import _osproc
from .ports import port_open

TOOLS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TOOLS_DIR.parent
POM_PATH = TOOLS_DIR / "kafka" / "pom.xml"

_MARKER = ".resolved"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

# The broker must stay small: CI and dev machines have 2 cores and run the whole platform beside it.
BROKER_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    # No hsperfdata files in /tmp: nothing here uses jstat, and stale files pile up after SIGKILL.
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
TOOL_JVM_OPTS: tuple[str, ...] = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:-UsePerfData")


def kafka_version() -> str:
    """The pinned Kafka version: ``$APPTREMIND_KAFKA_VERSION`` if set, else ``<kafka.version>`` of the pom."""
    override = os.environ.get("APPTREMIND_KAFKA_VERSION")
    if override:
        return override
    node = ET.parse(POM_PATH).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"{POM_PATH} has no <kafka.version> property")
    return (node.text or "").strip()


def cache_root() -> Path:
    """Where downloaded artifacts live: ``$APPTREMIND_CACHE_DIR`` or ``<repo>/.cache`` (git-ignored)."""
    return Path(os.environ.get("APPTREMIND_CACHE_DIR") or REPO_ROOT / ".cache").resolve()


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("java not found: Kafka needs Java 17+ on PATH or in $JAVA_HOME")
    return found


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Parallel test sessions may resolve the same version at once; only one may run Maven.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_kafka_jars(version: str | None = None) -> Path:
    """Return the directory holding every jar of the pinned broker, running Maven only on a cache miss.

    The marker file records the pom's digest, so editing the pom (another version, another dependency)
    resolves again instead of silently reusing stale jars.
    """
    version = version or kafka_version()
    home = cache_root() / f"kafka-{version}"
    libs = home / "libs"
    marker = home / _MARKER
    digest = hashlib.sha256(POM_PATH.read_bytes() + version.encode()).hexdigest()
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    with _file_lock(cache_root() / f"kafka-{version}.lock"):
        if marker.is_file() and marker.read_text().strip() == digest:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("mvn not found: Maven is needed once to fetch the Kafka jars")
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"resolving Kafka {version} jars failed ({' '.join(argv)}):\n{result.stdout}\n{result.stderr}"
            )
        # Swap in the complete directory only, so an interrupted download never looks resolved.
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
    return libs


def kafka_java_argv(
    main_class: str, *args: str, jvm_opts: tuple[str, ...] = TOOL_JVM_OPTS, log4j_config: Path | None = None
) -> list[str]:
    """A java command line running ``main_class`` (e.g. ``org.apache.kafka.tools.ProducerPerformance``)
    on the pinned Kafka classpath."""
    libs = ensure_kafka_jars()
    argv = [java_executable(), *jvm_opts]
    if log4j_config is not None:
        argv.append(f"-Dlog4j2.configurationFile={log4j_config}")
    # java expands the trailing '*' itself, so no shell is involved.
    return [*argv, "-cp", f"{libs}/*", main_class, *args]


def _random_cluster_id() -> str:
    # Same format as org.apache.kafka.common.Uuid#toString: url-safe base64 of 16 random bytes, unpadded.
    # Kafka rejects ids starting with '-' on the command line, so draw again in that case.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


_LOG4J2_TEMPLATE = """\
# Written by apptremind_devstack.kafka on every start.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = STDOUT
# Per-request and per-partition chatter would drown the useful lines.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
# Full config dumps (hundreds of lines per start); server.properties has what was set.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.kafkaconfig.name = kafka.server.KafkaConfig
logger.kafkaconfig.level = WARN
"""


class KafkaBroker:
    """One KRaft node acting as broker and controller, listening on 127.0.0.1 only.

    ``data_dir`` keeps the config, the metadata log and the topic data across restarts; a fresh directory
    gets a fresh cluster. The broker's stdout/stderr and log4j output go to ``log_file``
    (default ``data_dir/kafka.log``).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        log_file: Path | None = None,
        *,
        extra_config: Mapping[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.log_file = Path(log_file).resolve() if log_file is not None else self.data_dir / "kafka.log"
        self.extra_config = dict(extra_config or {})
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public API ------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid while it runs (also its process group id)."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    def start(self, timeout: float = 90) -> None:
        """Start the broker and return once it answers a metadata request; raise with the log tail otherwise."""
        if self.pid is not None:
            raise RuntimeError(f"Kafka broker already running (pid {self.pid})")
        if port_open("127.0.0.1", self.port) or port_open("127.0.0.1", self.controller_port):
            raise RuntimeError(f"port {self.port} or {self.controller_port} on 127.0.0.1 is already in use")
        deadline = time.monotonic() + timeout
        (self.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        libs = ensure_kafka_jars()
        log4j = self._write_log4j_config()
        self._write_server_properties()
        if not (self.log_dir / "meta.properties").is_file():
            self._format_storage(libs, log4j)

        argv = [
            java_executable(),
            *BROKER_JVM_OPTS,
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.data_dir}",
            # Compression codecs unpack native libraries into the temp dir; keep them with the broker.
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.config_file),
        ]
        with self.log_file.open("ab") as log:
            log.write(
                f"\n==== starting Kafka broker on {self.bootstrap_servers} at {time.ctime()}\n".encode()
            )
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 30) -> None:
        """Graceful shutdown (SIGTERM to the process group), SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _osproc.terminate_group(proc.pid, timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash would; the data directory is kept for a restart."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _osproc.kill_group(proc.pid)
        self._reap()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the broker (SIGSTOP) for the block, as a long GC pause or a stalled VM would: connections
        stay open and requests sent meanwhile get no answer until it resumes."""
        pid = self.pid
        if pid is None:
            raise RuntimeError("Kafka broker is not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def restart(self, timeout: float = 90) -> None:
        self.stop()
        self.start(timeout=timeout)

    def admin_client(self, **config: Any) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap_servers, **config})

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------------

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._proc = None

    def _properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter set works the same on 3.9 and 4.x and needs no --standalone at format time.
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Topics are declared in code; a typo must fail instead of creating a topic.
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash the restarted node is refused (DUPLICATE_BROKER_REGISTRATION) until its previous
            # incarnation's session expires; the 9 s default dominates crash-restart tests. Heartbeats stay
            # well inside the shorter session so a busy 2-core machine does not fence the only broker.
            "broker.session.timeout.ms": "5000",
            "broker.heartbeat.interval.ms": "500",
            # Few threads: the machine has 2 cores and the broker serves a handful of local clients.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self.extra_config)
        return props

    def _write_server_properties(self) -> None:
        # Rewritten on every start so a restart may use other ports; the cluster id lives in meta.properties.
        lines = [f"{key}={value}" for key, value in self._properties().items()]
        self.config_file.write_text(
            "# Written by apptremind_devstack.kafka on every start.\n" + "\n".join(lines) + "\n"
        )

    def _write_log4j_config(self) -> Path:
        path = self.data_dir / "log4j2.properties"
        path.write_text(_LOG4J2_TEMPLATE.format(level=self.log_level))
        return path

    def _format_storage(self, libs: Path, log4j: Path) -> None:
        argv = [
            java_executable(),
            *TOOL_JVM_OPTS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(self.config_file),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        with self.log_file.open("a") as log:
            log.write(f"==== {' '.join(argv)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")

    def _wait_ready(self, deadline: float) -> None:
        # A listening socket is not enough: the broker accepts connections before it has joined the
        # KRaft quorum and registered itself, so ask for real metadata and look for our own node.
        proc = self._proc
        assert proc is not None
        admin: AdminClient | None = None
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"Kafka broker exited with code {proc.returncode} during startup; "
                    f"log tail of {self.log_file}:\n{_osproc.tail(self.log_file)}"
                )
            if not port_open("127.0.0.1", self.port):
                time.sleep(0.2)
                continue
            if admin is None:
                # librdkafka would log every refused reconnect to stderr; the broker log has the real story.
                admin = self.admin_client(**{"log_level": 0, "reconnect.backoff.max.ms": 500})
            try:
                metadata = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            except Exception as exc:  # KafkaException carries the librdkafka reason
                last_error = repr(exc)
                time.sleep(0.2)
                continue
            if 1 in metadata.brokers:
                return
            last_error = f"metadata lists brokers {sorted(metadata.brokers)}"
            time.sleep(0.2)
        raise TimeoutError(
            f"Kafka broker on {self.bootstrap_servers} not ready in time (last error: {last_error}); "
            f"log tail of {self.log_file}:\n{_osproc.tail(self.log_file)}"
        )
