"""A tiny supervisor for ``make up`` / ``make down``: launch detached processes, remember them on disk,
and stop every one of them later from another process.

Each process runs in its own session (so ``make up`` may return and a terminal hang-up does not reach it)
and is remembered as ``<state_dir>/<name>.pid``: the pid on the first line (usable from a shell), then the
kernel start time (so a recycled pid is never signalled) and a launch sequence number (so ``stop_all``
stops in reverse launch order: services before Kafka and Postgres). A Postgres cluster is remembered as
``<state_dir>/<name>.pgdata`` and stopped with ``pg_ctl``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _osproc
from .postgres import postmaster_pid, stop_cluster

# Keeps Popen objects referenced so children stopped from this same process get reaped (no zombies),
# and so their garbage collection does not warn about still-running children after `make up` returns.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Record:
    """One remembered process or Postgres cluster."""

    name: str
    path: Path
    seq: int
    pid: int | None = None
    start_time: int | None = None
    pgdata: Path | None = None

    def alive(self) -> bool:
        if self.pid is None:
            return False
        # The start time guards against a pid recycled since the record was written.
        return _osproc.pid_alive(self.pid) and _osproc.start_time(self.pid) == self.start_time


def start_process(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    log_file: Path,
    state_dir: Path,
    cwd: Path | None = None,
) -> int:
    """Launch ``argv`` detached in a new session, output appended to ``log_file``; return its pid.

    ``env`` is merged over the current environment (services need PATH and the venv like any child).
    """
    existing = _read(state_dir / f"{name}.pid")
    if existing is not None and existing.alive():
        raise RuntimeError(f"{name} is already running (pid {existing.pid})")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n==== starting {name} at {time.ctime()}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    record_process(state_dir, name, proc.pid)
    return proc.pid


def record_process(state_dir: Path, name: str, pid: int) -> None:
    """Remember a process started elsewhere (e.g. ``KafkaBroker.pid``) so ``stop_all`` stops it."""
    started = _osproc.start_time(pid)
    if started is None:
        raise RuntimeError(f"cannot record {name}: pid {pid} does not exist")
    _write(state_dir / f"{name}.pid", [str(pid), str(started), str(time.time_ns())])


def record_postgres(state_dir: Path, name: str, pgdata: Path) -> None:
    """Remember a Postgres cluster directory (``PostgresServer.pgdata``) so ``stop_all`` stops it."""
    _write(state_dir / f"{name}.pgdata", [str(Path(pgdata).resolve()), str(time.time_ns())])


def records(state_dir: Path) -> list[Record]:
    """Everything remembered in ``state_dir``, in launch order."""
    if not state_dir.is_dir():
        return []
    found = [_read(path) for path in [*state_dir.glob("*.pid"), *state_dir.glob("*.pgdata")]]
    return sorted((r for r in found if r is not None), key=lambda r: r.seq)


def running(state_dir: Path) -> dict[str, int]:
    """Name to pid of the remembered processes that still run (the postmaster's pid for a cluster)."""
    result: dict[str, int] = {}
    for record in records(state_dir):
        pid = postmaster_pid(record.pgdata) if record.pgdata is not None else record.pid
        if pid is not None and (record.pgdata is not None or record.alive()):
            result[record.name] = pid
    return result


def stop_all(state_dir: Path, timeout: float = 20) -> list[str]:
    """Stop everything remembered in ``state_dir``, newest first; return the names that were running.

    Each process group gets SIGTERM, then SIGKILL after ``timeout`` seconds; record files are removed.
    Raises if any recorded process (or member of its group) is still alive at the end.
    """
    stopped: list[str] = []
    leftovers: list[str] = []
    for record in reversed(records(state_dir)):
        if record.pgdata is not None:
            if (record.pgdata / "postmaster.pid").exists():
                stopped.append(record.name)
            stop_cluster(record.pgdata, timeout)
            if postmaster_pid(record.pgdata) is not None:
                leftovers.append(f"{record.name} (postmaster of {record.pgdata})")
        elif record.pid is not None and record.alive():
            stopped.append(record.name)
            _stop_pid(record.pid, timeout)
            _reap(record.pid)
            if record.alive() or _osproc.group_members(record.pid):
                leftovers.append(f"{record.name} (pid {record.pid})")
        record.path.unlink(missing_ok=True)
    if leftovers:
        raise RuntimeError(f"processes survived stop_all: {', '.join(leftovers)}")
    return stopped


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        own_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    if own_group:
        _osproc.terminate_group(pid, timeout)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _osproc.wait_gone([pid], timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _osproc.wait_gone([pid], 10)


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def _read(path: Path) -> Record | None:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        if path.suffix == ".pgdata":
            return Record(name=path.stem, path=path, seq=int(lines[1]), pgdata=Path(lines[0]))
        return Record(
            name=path.stem, path=path, seq=int(lines[2]), pid=int(lines[0]), start_time=int(lines[1])
        )
    except (IndexError, ValueError):
        # A truncated or hand-edited file: keep it listed so stop_all removes it, but never signal it.
        return Record(name=path.stem, path=path, seq=0)
