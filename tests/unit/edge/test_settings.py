"""EdgeSettings from the environment, above all the `name=host:port` service target list."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apptremind_edge.settings import DEFAULT_SERVICE_TARGETS, EdgeSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APPTREMIND_SERVICE_TARGETS",
        "APPTREMIND_EDGE_HOST",
        "APPTREMIND_EDGE_PORT",
        "APPTREMIND_EDGE_MAX_BODY_BYTES",
        "APPTREMIND_EDGE_MAX_QUERY_DEPTH",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_local_stack() -> None:
    settings = EdgeSettings()
    assert (settings.edge_host, settings.edge_port) == ("127.0.0.1", 8080)
    assert settings.service_targets == DEFAULT_SERVICE_TARGETS
    assert settings.service_targets["auth"] == "127.0.0.1:50051"
    assert settings.edge_max_body_bytes == 64 * 1024
    assert settings.edge_max_query_depth == 10


def test_everything_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SERVICE_TARGETS", " auth=10.0.0.1:50051, business = [::1]:50052 ,")
    monkeypatch.setenv("APPTREMIND_EDGE_HOST", "0.0.0.0")
    monkeypatch.setenv("APPTREMIND_EDGE_PORT", "9090")
    monkeypatch.setenv("APPTREMIND_EDGE_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("APPTREMIND_EDGE_MAX_QUERY_DEPTH", "4")

    settings = EdgeSettings()

    assert settings.service_targets == {"auth": "10.0.0.1:50051", "business": "[::1]:50052"}
    assert list(settings.service_targets) == ["auth", "business"]
    assert (settings.edge_host, settings.edge_port) == ("0.0.0.0", 9090)
    assert (settings.edge_max_body_bytes, settings.edge_max_query_depth) == (2048, 4)


def test_an_empty_target_list_means_no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTREMIND_SERVICE_TARGETS", "")
    assert EdgeSettings().service_targets == {}


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("auth", "name=host:port"),
        ("=127.0.0.1:1", "name=host:port"),
        ("auth=127.0.0.1", "host:port"),
        ("auth=127.0.0.1:http", "host:port"),
        ("auth=127.0.0.1:70000", "host:port"),
        ("auth=127.0.0.1:1,auth=127.0.0.1:2", "listed twice"),
    ],
)
def test_malformed_targets_fail_at_startup(monkeypatch: pytest.MonkeyPatch, raw: str, complaint: str) -> None:
    monkeypatch.setenv("APPTREMIND_SERVICE_TARGETS", raw)
    with pytest.raises(ValidationError, match=complaint):
        EdgeSettings()


def test_targets_given_in_code_are_checked_too() -> None:
    with pytest.raises(ValidationError, match="host:port"):
        EdgeSettings(service_targets={"auth": "nowhere"})
