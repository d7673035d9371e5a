"""The dev-stack launchers start real servers that behave like real servers, and leave nothing behind."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.cimpl import NewTopic

from apptremind_devstack import _osproc, procs
from apptremind_devstack.kafka import KafkaBroker
from apptremind_devstack.ports import free_port, port_open
from apptremind_devstack.postgres import ExternalPostgres, PostgresServer


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp root: any pytest session that starts resets that root to mode 0700, which
    # would lock Postgres (it runs as its own user) out of its data directory if two sessions overlap.
    path = Path(tempfile.mkdtemp(prefix="apptremind-devstack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / "pg", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kafka(workdir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(workdir / "kafka", free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


def _create_topic(broker: KafkaBroker, name: str, partitions: int = 3) -> None:
    # The client must outlive the future: a collected AdminClient fails it with _DESTROY.
    admin = broker.admin_client()
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
    futures[name].result(timeout=30)


def _produce(broker: KafkaBroker, topic: str, key: bytes, value: bytes) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(
        {"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []


def _consume_one(broker: KafkaBroker, topic: str, timeout: float = 30) -> Message:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            return msg
        raise AssertionError(f"no message on {topic} within {timeout}s")
    finally:
        consumer.close()


def test_exclusion_constraint_rejects_overlapping_ranges(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE slot (
                staff_id uuid NOT NULL,
                during tstzrange NOT NULL,
                EXCLUDE USING gist (staff_id WITH =, during WITH &&)
            )
            """
        )
        staff = uuid.uuid4()
        insert = "INSERT INTO slot VALUES (%s, tstzrange(%s, %s))"
        conn.execute(insert, (staff, "2030-01-01 09:00Z", "2030-01-01 10:00Z"))
        # Half-open ranges: back-to-back bookings touch but do not overlap.
        conn.execute(insert, (staff, "2030-01-01 10:00Z", "2030-01-01 11:00Z"))
        # Another staff member may hold the same time.
        conn.execute(insert, (uuid.uuid4(), "2030-01-01 09:30Z", "2030-01-01 10:30Z"))
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(insert, (staff, "2030-01-01 09:30Z", "2030-01-01 10:30Z"))
        count = conn.execute("SELECT count(*) FROM slot").fetchone()
        assert count == (3,)


def test_new_databases_inherit_btree_gist(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh_db")
    with psycopg.connect(postgres.dsn("fresh_db")) as conn:
        row = conn.execute("SELECT extname FROM pg_extension WHERE extname = 'btree_gist'").fetchone()
        assert row == ("btree_gist",)


def test_postgres_requires_the_password_over_tcp(postgres: PostgresServer) -> None:
    wrong = postgres.dsn().replace(":postgres@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_postgres_survives_a_crash(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE crash_probe (v int)")
        conn.execute("INSERT INTO crash_probe VALUES (42)")
    pid = postgres.pid
    assert pid is not None
    backends = _osproc.children(pid)
    postgres.kill()
    assert _osproc.wait_gone([pid, *backends], 0) == []
    assert postgres.pid is None
    postgres.start()
    with psycopg.connect(postgres.dsn()) as conn:
        assert conn.execute("SELECT v FROM crash_probe").fetchall() == [(42,)]


def test_external_postgres_rewrites_the_database_name() -> None:
    url = ExternalPostgres("postgresql://u:p@db.example:5433/main?sslmode=require")
    assert url.dsn("booking") == "postgresql://u:p@db.example:5433/booking?sslmode=require"
    kv = ExternalPostgres("host=db.example port=5433 user=u dbname=main")
    assert "dbname=booking" in kv.dsn("booking")
    assert "dbname=main" not in kv.dsn("booking")


def test_kafka_round_trip(kafka: KafkaBroker) -> None:
    topic = f"test.devstack.roundtrip.v1-{uuid.uuid4().hex[:8]}"
    _create_topic(kafka, topic)
    metadata = kafka.admin_client().list_topics(topic=topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3
    _produce(kafka, topic, b"business-1", b"hello")
    msg = _consume_one(kafka, topic)
    assert (msg.key(), msg.value()) == (b"business-1", b"hello")


def test_kafka_does_not_auto_create_topics(kafka: KafkaBroker) -> None:
    topic = f"test.devstack.undeclared.v1-{uuid.uuid4().hex[:8]}"
    metadata = kafka.admin_client().list_topics(topic=topic, timeout=10)
    error = metadata.topics[topic].error
    assert error is not None
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_kafka_keeps_data_across_a_crash(kafka: KafkaBroker) -> None:
    topic = f"test.devstack.crash.v1-{uuid.uuid4().hex[:8]}"
    _create_topic(kafka, topic, partitions=1)
    _produce(kafka, topic, b"k", b"before-crash")
    pid = kafka.pid
    assert pid is not None
    kafka.kill()
    assert kafka.pid is None
    assert not _osproc.pid_alive(pid)
    assert not port_open("127.0.0.1", kafka.port)
    kafka.start()
    assert _consume_one(kafka, topic).value() == b"before-crash"


def test_supervisor_stops_process_groups(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # The shell leaves a grandchild in the same process group: stop_all must get it too.
    pid = procs.start_process(
        "sleeper",
        ["sh", "-c", "sleep 300 & echo $! > child.pid; wait"],
        None,
        tmp_path / "s.log",
        state,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "child.pid").read_text())
    assert procs.running(state) == {"sleeper": pid}
    with pytest.raises(RuntimeError, match="already running"):
        procs.start_process("sleeper", ["true"], None, tmp_path / "s.log", state)
    assert procs.stop_all(state, timeout=5) == ["sleeper"]
    assert not _osproc.pid_alive(pid)
    assert not _osproc.pid_alive(child)
    assert list(state.iterdir()) == []


def test_supervisor_ignores_recycled_pids(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        procs.record_process(state, "ghost", bystander.pid)
        record = state / "ghost.pid"
        pid, started, seq = record.read_text().split()
        # Same pid, other start time: what a recycled pid looks like.
        record.write_text(f"{pid}\n{int(started) + 1}\n{seq}\n")
        assert procs.stop_all(state, timeout=1) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_all_stops_recorded_kafka_and_postgres(
    tmp_path: Path, kafka: KafkaBroker, postgres: PostgresServer
) -> None:
    state = tmp_path / "state"
    procs.record_postgres(state, "postgres", postgres.pgdata)
    assert kafka.pid is not None
    procs.record_process(state, "kafka", kafka.pid)
    pg_pid, kafka_pid = postgres.pid, kafka.pid
    assert pg_pid is not None
    assert procs.running(state) == {"postgres": pg_pid, "kafka": kafka_pid}
    pg_children = _osproc.children(pg_pid)
    assert len(pg_children) > 1  # checkpointer, walwriter, io workers, ...
    kafka_group = _osproc.group_members(kafka_pid)
    assert kafka_pid in kafka_group

    assert procs.stop_all(state, timeout=30) == ["kafka", "postgres"]

    assert _osproc.wait_gone([kafka_pid, *kafka_group, pg_pid, *pg_children], 0) == []
    assert _osproc.group_members(kafka_pid) == []
    assert postgres.pid is None
    assert not port_open("127.0.0.1", kafka.port)
    assert not port_open("127.0.0.1", postgres.port)
    assert list(state.iterdir()) == []
