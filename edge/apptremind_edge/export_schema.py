"""Writes the schema's SDL to `edge/schema.graphql`, the file clients and reviewers read.

The SDL is committed so a schema change shows up in review as a diff; a unit test fails when the
committed file differs from what the code generates, so it cannot go stale.

    uv run python -m apptremind_edge.export_schema [PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

from strawberry.printer import print_schema

from .schema import build_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"


def render_sdl() -> str:
    # The depth limit is a runtime guard, not part of the SDL, so the default schema stands for all.
    return print_schema(build_schema()) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SCHEMA_FILE
    target.write_text(render_sdl(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
