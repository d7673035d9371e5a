"""The committed SDL (edge/schema.graphql) must be what the code generates, so a schema change always
arrives with its reviewable diff. On failure run `uv run python -m apptremind_edge.export_schema`."""

from __future__ import annotations

from pathlib import Path

from apptremind_edge.export_schema import SCHEMA_FILE, main, render_sdl


def test_committed_schema_is_current(repo_root: Path) -> None:
    committed = repo_root / "edge" / "schema.graphql"
    assert committed == SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == render_sdl(), (
        "edge/schema.graphql is stale: run `uv run python -m apptremind_edge.export_schema`"
    )


def test_export_writes_the_generated_sdl(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    main([str(target)])
    sdl = target.read_text(encoding="utf-8")
    assert sdl == render_sdl()
    assert "platformHealth: [ServiceHealth!]!" in sdl
