"""Creates a service's own database and roles with least-privilege grants (idempotent).

Two roles per service: `<db>_migrator` owns the schema and runs migrations; `<db>` is the runtime role with
DML only (no DDL, no access to any other service's database). PUBLIC loses CONNECT on each service database,
so one service's credentials open no other service's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

EXTENSIONS = ("btree_gist",)


@dataclass(frozen=True, slots=True)
class ServiceDatabase:
    service: str
    runtime_password: str
    migrator_password: str

    @property
    def database(self) -> str:
        return f"apptremind_{self.service}"

    @property
    def runtime_role(self) -> str:
        return self.database

    @property
    def migrator_role(self) -> str:
        return f"{self.database}_migrator"

    def runtime_dsn(self, admin_dsn: str) -> str:
        return _with_credentials(admin_dsn, self.runtime_role, self.runtime_password, self.database)

    def migrator_dsn(self, admin_dsn: str) -> str:
        return _with_credentials(admin_dsn, self.migrator_role, self.migrator_password, self.database)


def _with_credentials(dsn: str, user: str, password: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, ""))


def _ensure_role(cur: psycopg.Cursor[tuple[object, ...]], role: str, password: str) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(
        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )


def bootstrap_service_database(admin_dsn: str, db: ServiceDatabase) -> None:
    """Run as a superuser (or a role with CREATEDB + CREATEROLE) once per environment and service."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn, conn.cursor() as cur:
        _ensure_role(cur, db.migrator_role, db.migrator_password)
        _ensure_role(cur, db.runtime_role, db.runtime_password)
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.database,))
        if cur.fetchone() is None:
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db.database), sql.Identifier(db.migrator_role)
                )
            )
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.database)))
        cur.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(db.database), sql.Identifier(db.runtime_role)
            )
        )

    with (
        psycopg.connect(_with_admin_db(admin_dsn, db.database), autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        for ext in EXTENSIONS:
            cur.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
        migrator, runtime = sql.Identifier(db.migrator_role), sql.Identifier(db.runtime_role)
        cur.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(migrator))
        cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(runtime))
        cur.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
            ).format(migrator, runtime)
        )
        cur.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(migrator, runtime)
        )
        # Tables created before the default privileges existed (re-runs after a manual change).
        cur.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                runtime
            )
        )
        cur.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(runtime))


def _with_admin_db(admin_dsn: str, dbname: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
