"""`make up` on a fresh state directory brings every process up healthy; `make down` leaves nothing running.

The stack runs exactly as `make up` runs it (the CLI in a subprocess), but in a temporary state directory
and with every port moved to a free one, so it never collides with a developer's own `make up`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from apptremind_devstack import _osproc, procs
from apptremind_devstack.postgres import postmaster_pid
from apptremind_devstack.stack import (
    SERVICES,
    Layout,
    grpc_port_env,
    http_port_env,
    relay_port_env,
)

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
    ]
    for service in SERVICES:
        names += [grpc_port_env(service), http_port_env(service), relay_port_env(service)]
    env.update(zip(names, map(str, _free_ports(len(names))), strict=True))
    env["APPTREMIND_STACK_DIR"] = str(state_dir)
    return env


def _cli(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "apptremind_devstack.cli", command]
    if command == "up":
        argv += ["--timeout", "75"]
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
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = _stack_env(tmp_path / "stack")
    yield env
    # Whatever happened above, leave nothing running.
    _cli("down", env, timeout=120)


def test_up_brings_everything_up_healthy_and_down_leaves_nothing(stack_env: dict[str, str]) -> None:
    state_dir = Path(stack_env["APPTREMIND_STACK_DIR"])
    up = _cli("up", stack_env, timeout=110)
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    assert "every process is healthy" in up.stdout

    stored = json.loads((state_dir / "stack.json").read_text())
    layout = Layout.from_json(stored["layout"])
    assert layout.pg_port == int(stack_env["APPTREMIND_PG_PORT"])  # the overrides were honoured
    started = {c["name"] for c in stored["components"]}
    assert set(SERVICES) <= started
    assert {f"{s}-relay" for s in SERVICES} <= started
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

    # A second `up` while everything runs starts nothing and just reports.
    again = _cli("up", stack_env, timeout=60)
    assert again.returncode == 0, f"second up failed:\n{again.stdout}\n{again.stderr}"
    assert "already up" in again.stdout
    status = _cli("status", stack_env, timeout=60)
    assert status.returncode == 0, status.stdout

    pids = _recorded_pids(state_dir)
    assert len(pids) >= 2 + 2 * len(SERVICES)
    down = _cli("down", stack_env, timeout=120)
    assert down.returncode == 0, f"down failed:\n{down.stdout}\n{down.stderr}"
    survivors = {pid: name for pid, (name, started_at) in pids.items() if _still_running(pid, started_at)}
    assert survivors == {}, f"still running after down: {survivors}"
    assert procs.records(state_dir) == []
