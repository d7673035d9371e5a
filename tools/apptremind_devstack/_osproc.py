"""Low-level process helpers shared by the launchers and the supervisor (Linux /proc based)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple


class ProcStat(NamedTuple):
    state: str
    ppid: int
    pgid: int
    start_time: int  # clock ticks since boot; with the pid it identifies a process uniquely

    @property
    def alive(self) -> bool:
        # Zombies count as dead: an orphan is reparented to PID 1, which in minimal VMs/containers
        # reaps late or never, yet the process is gone for every practical purpose.
        return self.state not in ("Z", "X")


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses,
    # so split after the last closing one. fields[0] is field 3 of proc(5).
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat.alive


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat.start_time


def _live_processes() -> Iterator[tuple[int, ProcStat]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat.alive:
                yield int(entry.name), stat


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is ``pgid``."""
    return [pid for pid, stat in _live_processes() if stat.pgid == pgid]


def children(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    return [child for child, stat in _live_processes() if stat.ppid == pid]


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every pid is dead; return those still alive after ``timeout``."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if pid_alive(pid)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.05)


def terminate_group(pgid: int, timeout: float) -> None:
    """SIGTERM a whole process group, then SIGKILL whatever is left after ``timeout`` seconds."""
    members = group_members(pgid)
    if not members:
        return
    signal_group(pgid, signal.SIGTERM)
    if wait_gone(members + group_members(pgid), timeout):
        kill_group(pgid)


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL a whole process group and wait until the kernel has removed its members."""
    members = group_members(pgid)
    signal_group(pgid, signal.SIGKILL)
    leftovers = wait_gone(members, timeout)
    if leftovers:
        raise RuntimeError(f"processes {leftovers} survived SIGKILL of group {pgid}")


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(data.splitlines()[-lines:])
