"""The local stack against real processes: idempotent up, clean down, external mode, clear errors."""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from shoppulse.allocator import DRAIN_MALLOC_CONF, POLARS_MALLOC_CONF_VAR
from shoppulse.settings import Settings
from shoppulse.stack import services
from shoppulse.stack.apps import app_processes
from shoppulse.stack.errors import StackError
from shoppulse.stack.kafka import LocalKafka
from shoppulse.stack.postgres import LocalPostgres, find_server_bindir
from shoppulse.stack.processes import free_port, port_is_open, process_cmdline


def isolated_settings(home: Path) -> Settings:
    """A second, private local stack: own state dir and free ports, never the session's services."""
    return Settings(
        home=home,
        kafka_bootstrap_servers=None,
        database_url_override=None,
        dagster_database_url_override=None,
        lake_dir_override=None,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        pg_port=free_port(),
    )


def test_up_twice_is_a_no_op_the_second_time(stack: services.UpReport, settings: Settings) -> None:
    before = {row.name: row.detail for row in services.status(settings)}
    again = services.up(settings)
    assert again.started == []
    assert sorted(again.already_running + again.external) == ["kafka", "postgres"]
    after = {row.name: row.detail for row in services.status(settings)}
    assert after == before  # same pids, nothing restarted


def test_local_pid_names_our_running_services(stack: services.UpReport, settings: Settings) -> None:
    for service, marker in ((services.KAFKA, "kafka"), (services.POSTGRES, "postgres")):
        pid = services.local_pid(settings, service)
        if service in stack.external:
            assert pid is None
        else:
            assert pid is not None and marker in (process_cmdline(pid) or "")
    with pytest.raises(ValueError, match="unknown service"):
        services.local_pid(settings, "redis")


def test_kafka_produce_consume_round_trip(kafka_topic, settings: Settings) -> None:
    topic = kafka_topic("roundtrip", partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}-{uuid.uuid4()}".encode() for i in range(500)}
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    delivered: list[str] = []
    for key, value in sent.items():
        producer.produce(
            topic, value, key, on_delivery=lambda err, msg: delivered.append("ok" if err is None else str(err))
        )
    assert producer.flush(30) == 0
    assert delivered == ["ok"] * len(sent)

    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": "roundtrip", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    received: dict[bytes, bytes] = {}
    for _ in range(100):
        for msg in consumer.consume(1000, timeout=0.5):
            assert msg.error() is None
            received[msg.key()] = msg.value()
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent


def test_postgres_connect_create_drop(pg_database) -> None:
    url = pg_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (id int primary key, name text)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        assert conn.execute("SELECT count(*), string_agg(name, ',' ORDER BY id) FROM t").fetchone() == (2, "a,b")
    info = psycopg.conninfo.conninfo_to_dict(url)
    dbname = info.pop("dbname")
    with psycopg.connect(psycopg.conninfo.make_conninfo(**info, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None


def test_isolated_stack_up_then_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "home")
    kafka, pg = LocalKafka(settings), LocalPostgres(settings)
    # A stale pid file (a pid that is not our broker) must not confuse `up`.
    kafka.pid_file.write(1)
    report = services.up(settings)
    try:
        assert report.started == ["kafka", "postgres"]
        kafka_pid, pg_pid = kafka.running_pid(), pg.running_pid()
        assert kafka_pid and pg_pid
        assert port_is_open(settings.kafka_port) and port_is_open(settings.pg_port)
        with psycopg.connect(settings.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("shoppulse",)
        with psycopg.connect(settings.dagster_database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("shoppulse_dagster",)
        assert services.up(settings).started == []
    finally:
        stopped = services.down(settings)
    assert stopped == ["kafka", "postgres"]
    assert process_cmdline(kafka_pid) is None and process_cmdline(pg_pid) is None
    for port in (settings.kafka_port, settings.kafka_controller_port, settings.pg_port):
        assert not port_is_open(port), f"port {port} still open after down"
    assert not kafka.pid_file.path.exists()
    assert services.down(settings) == []


def test_external_mode_starts_nothing(stack: services.UpReport, settings: Settings, tmp_path: Path) -> None:
    external = Settings(
        home=tmp_path / "home",
        kafka_bootstrap_servers=settings.bootstrap_servers,
        database_url_override=settings.database_url,
    )
    report = services.up(external)
    assert report.started == [] and report.already_running == []
    assert report.external == ["kafka", "postgres"]
    assert not (tmp_path / "home" / "kafka").exists()
    assert not (tmp_path / "home" / "postgres").exists()
    assert services.down(external) == []
    assert port_is_open(
        settings.kafka_port if not settings.external_kafka else int(settings.bootstrap_servers.rsplit(":", 1)[1])
    )


def test_port_in_use_names_the_port_and_the_variable(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.kafka_port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"port {settings.kafka_port} is in use.*SHOPPULSE_KAFKA_PORT"):
            services.up(settings)


def test_missing_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"no Java found.*openjdk-17") as excinfo:
        LocalKafka(isolated_settings(tmp_path / "home")).java()
    assert "\n" not in str(excinfo.value)


def test_unresolvable_kafka_version_reports_maven_failure(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "home").model_copy(update={"kafka_version": "0.0.404"})
    with pytest.raises(StackError, match=r"Maven could not resolve org\.apache\.kafka:kafka_2\.13:0\.0\.404"):
        LocalKafka(settings).ensure_jars()


def test_server_binaries_are_found() -> None:
    bindir = find_server_bindir()
    assert bindir is not None
    version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    assert "PostgreSQL" in version.stdout


def test_only_the_code_server_gets_the_drain_allocator_options(tmp_path: Path) -> None:
    """The drain sensor runs in the code server: its Polars allocator is tuned for the drain's RSS budget."""
    env = {"PATH": "/usr/bin", POLARS_MALLOC_CONF_VAR: "narenas:4"}
    environments = {app.name: app.environment(env) for app in app_processes(isolated_settings(tmp_path))}
    assert environments["dagster-code-server"][POLARS_MALLOC_CONF_VAR] == f"narenas:4,{DRAIN_MALLOC_CONF}"
    assert environments["dagster-code-server"]["PATH"] == "/usr/bin"
    assert all(environment == env for name, environment in environments.items() if name != "dagster-code-server")
