"""CPU time as Linux counts it (/proc): of one process, of every process by command name, of the machine.
The benchmarks report CPU per request or per reminder with these, which stays comparable when other work
shares the machine and latencies do not."""

from __future__ import annotations

import collections
import os
from pathlib import Path


def _user_and_system(stat: str) -> float:
    # Fields after the command name (which may hold spaces and parentheses): utime and stime are the 12th and
    # 13th.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    return _user_and_system(Path(f"/proc/{pid}/stat").read_text())


def cpu_by_command() -> collections.Counter[str]:
    """User + system CPU seconds of every live process so far, summed by command name."""
    totals: collections.Counter[str] = collections.Counter()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        totals[text[text.index("(") + 1 : text.rindex(")")]] += _user_and_system(text)
    return totals


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat, all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")
