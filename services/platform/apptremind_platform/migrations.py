"""Schema migrations with yoyo: plain SQL files, the platform's own tables first, then the service's."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from yoyo import get_backend, read_migrations

PLATFORM_SQL = Path(str(resources.files("apptremind_platform") / "sql"))


def to_yoyo_url(dsn: str) -> str:
    # yoyo picks its driver from the scheme; psycopg 3 is "postgresql+psycopg".
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


def apply_migrations(dsn: str, service_sql_dir: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the ids applied. Safe to run concurrently (yoyo locks)."""
    sources = [str(PLATFORM_SQL)]
    if service_sql_dir is not None and service_sql_dir.exists():
        sources.append(str(service_sql_dir))
    backend = get_backend(to_yoyo_url(dsn))
    migrations = read_migrations(*sources)
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]
