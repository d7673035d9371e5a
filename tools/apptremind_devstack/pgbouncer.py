"""PgBouncer in transaction pooling mode in front of a Postgres, to prove our SQL is pooler-safe.

Debian 12 ships 1.18, which has no prepared-statement support at all: a statement prepared on one server
connection and used from another fails, which is the strict behaviour we want to test against.

Needs the `pgbouncer` binary (Debian package `pgbouncer`; `.ci/run` installs it). As root it drops to the
same unprivileged user the Postgres launcher uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .ports import wait_for_port
from .postgres import SERVICE_USER, _ensure_service_user


def pgbouncer_binary() -> str | None:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class PgBouncer:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        upstream_host: str,
        upstream_port: int,
        users: Mapping[str, str],
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.users = dict(users)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "pgbouncer.log"

    def dsn(self, user: str, dbname: str) -> str:
        return f"postgresql://{user}:{self.users[user]}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 20) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        userlist = self.data_dir / "userlist.txt"
        # Plain-text secrets let PgBouncer answer the server's SCRAM challenge itself; test-only passwords.
        userlist.write_text("".join(f'"{u}" "{p}"\n' for u, p in self.users.items()))
        config = self.data_dir / "pgbouncer.ini"
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={self.upstream_host} port={self.upstream_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = scram-sha-256",
                    f"auth_file = {userlist}",
                    "pool_mode = transaction",
                    "max_client_conn = 500",
                    "default_pool_size = 20",
                    "server_reset_query =",
                    "ignore_startup_parameters = extra_float_digits,options",
                    "",
                ]
            )
        )
        argv = [binary, str(config)]
        if os.geteuid() == 0:
            uid, gid = _ensure_service_user()
            for path in (self.data_dir, userlist, config):
                os.chown(path, uid, gid)
            os.chmod(userlist, 0o600)
            argv = [binary, "-u", SERVICE_USER, str(config)]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start:\n{self.log_file.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
