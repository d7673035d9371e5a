"""Each service gets its own database and roles: the runtime role has DML on its own tables and nothing
else; no service's credentials open another service's database."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.postgres import PostgresServer
from apptremind_devstack.stack import bootstrap_from_env
from apptremind_platform.db_bootstrap import bootstrap_service_database
from apptremind_platform.migrations import apply_migrations
from tests.fixtures.db import make_service_db


def test_runtime_role_is_least_privilege(postgres: PostgresServer) -> None:
    a = make_service_db(postgres, "lpa")
    b = make_service_db(postgres, "lpb")
    a.execute(
        "CREATE TABLE thing (business_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (business_id, id))"
    )

    with psycopg.connect(a.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO thing VALUES (gen_random_uuid(), 1)")
        conn.execute("UPDATE thing SET id = 2")
        assert conn.execute("SELECT count(*) FROM thing").fetchone() == (1,)
        conn.execute("DELETE FROM thing")
        conn.execute("INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', '\\x00')")
        for ddl in ("CREATE TABLE sneaky (id int)", "DROP TABLE thing", "ALTER TABLE thing ADD COLUMN x int"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(ddl)

    # Service A's runtime role cannot even connect to service B's database, nor the admin database.
    other = a.dsn.rsplit("/", 1)[0] + "/" + b.db.database
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(other).close()


def test_bootstrap_and_migrations_are_idempotent(postgres: PostgresServer) -> None:
    db = make_service_db(postgres, "idem")
    bootstrap_service_database(postgres.dsn(), db.db)
    assert apply_migrations(db.migrator_dsn) == []
    assert db.execute("SELECT count(*) FROM outbox_relay_lock") == [(1,)]


def test_bootstrap_command_prepares_every_service(postgres: PostgresServer, kafka: KafkaBroker) -> None:
    """`apptremind-stack bootstrap`, as docker compose and the Helm hook run it; twice, as upgrades do."""
    env = {
        "APPTREMIND_PG_DSN": postgres.dsn(),
        "APPTREMIND_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "APPTREMIND_DB_PASSWORD": "shared0secret",
        "APPTREMIND_BOOKING_DB_PASSWORD": "booking0secret",
    }
    assert bootstrap_from_env(env) == 0
    assert bootstrap_from_env(env) == 0
    for service, password in (("scheduler", "shared0secret"), ("booking", "booking0secret")):
        dsn = postgres.dsn(f"apptremind_{service}").replace(
            "postgres:postgres@", f"apptremind_{service}:{password}@"
        )
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=10).topics
    assert {"scheduler.reminder.due.v1", "scheduler.reminder.due.v1.dlq"} <= set(topics)
