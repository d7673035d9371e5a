"""docker-compose.yml and the Helm chart only start commands that exist."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("**/pyproject.toml"):
        if ".venv" in pyproject.parts:
            continue
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def test_compose_commands_are_console_scripts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = {svc["command"][0] for svc in compose["services"].values() if "command" in svc}
    assert commands
    assert commands <= console_scripts()
    services = {"auth", "business", "booking", "billing", "scheduler", "notification", "analytics"}
    assert services | {f"{s}-relay" for s in services} | {"edge", "bootstrap"} <= set(compose["services"])


def test_chart_commands_are_console_scripts() -> None:
    templates = "".join(p.read_text() for p in (ROOT / "charts/apptremind/templates").glob("*.yaml"))
    scripts = console_scripts()
    for name in ("apptremind-relay", "apptremind-edge", "apptremind-stack"):
        assert f'"{name}"' in templates
        assert name in scripts
    values = yaml.safe_load((ROOT / "charts/apptremind/values.yaml").read_text())
    for service in values["services"]:
        assert f"apptremind-{service}" in scripts
