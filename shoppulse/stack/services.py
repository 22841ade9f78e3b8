"""Bring the stack's backing services up and down: Kafka, PostgreSQL and the Dagster home."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.celery import celery_instance_yaml
from shoppulse.stack.errors import StackError
from shoppulse.stack.kafka import EVENTS_TOPIC_CONFIG, LocalKafka, ensure_topic
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.stack.s3 import LocalS3
from shoppulse.warehouse.db import migrate

KAFKA = "kafka"
POSTGRES = "postgres"
S3 = "s3"
LOCATION_NAME = "shoppulse"
"""The code location's name in the workspace the webserver and daemon share."""


@dataclass
class UpReport:
    """What `up` did for each service: started it, found ours running, or used an external one."""

    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | stopped | external | unreachable
    detail: str


def check_kafka(bootstrap_servers: str, timeout: float = 10.0) -> None:
    """Raise a StackError unless a metadata request to the cluster succeeds."""
    try:
        meta = AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": 3000}).list_topics(
            timeout=timeout
        )
    except KafkaException as exc:
        raise StackError(f"Kafka at {bootstrap_servers} did not answer a metadata request: {exc}") from exc
    if not meta.brokers:
        raise StackError(f"Kafka at {bootstrap_servers} reports no brokers")


def check_postgres(url: str, timeout: int = 10) -> None:
    """Raise a StackError unless the database accepts a connection."""
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StackError(f"PostgreSQL at {url} refused the connection: {str(exc).strip().splitlines()[0]}") from exc


def prepare_dagster_home(settings: Settings) -> None:
    """DAGSTER_HOME gets the repo's dagster.yaml and a workspace pointing at the code server."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if settings.run_launcher == "celery":
        (home / "dagster.yaml").write_text(celery_instance_yaml(settings))
    else:
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    (home / "workspace.yaml").write_text(
        "# Written by `python -m shoppulse.stack`: the webserver and daemon share one code server.\n"
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {settings.dagster_code_server_port}\n"
        f"      location_name: {LOCATION_NAME}\n"
    )


def up(settings: Settings) -> UpReport:
    """Start what is not running (idempotent); create the events topic, migrate the analytics schema and
    prepare the Dagster home."""
    began = time.monotonic()
    report = UpReport()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)

    if settings.external_kafka:
        check_kafka(settings.bootstrap_servers)
        report.external.append(KAFKA)
    elif LocalKafka(settings).start():
        report.started.append(KAFKA)
    else:
        report.already_running.append(KAFKA)
    ensure_topic(
        settings.bootstrap_servers, settings.events_topic, settings.events_topic_partitions, config=EVENTS_TOPIC_CONFIG
    )

    if settings.external_postgres:
        check_postgres(settings.database_url)
        report.external.append(POSTGRES)
    elif LocalPostgres(settings).start():
        report.started.append(POSTGRES)
    else:
        report.already_running.append(POSTGRES)

    if settings.local_s3:
        bucket = str(settings.lake_location).removeprefix("s3://").split("/", 1)[0]
        if LocalS3(settings).start(buckets=(bucket,)):
            report.started.append(S3)
        else:
            report.already_running.append(S3)

    migrate(settings.database_url)
    prepare_dagster_home(settings)
    report.seconds = time.monotonic() - began
    return report


def down(settings: Settings, services: list[str] | None = None) -> list[str]:
    """Stop the local services (all, or those named) that run; returns the names stopped."""
    stopped: list[str] = []
    wanted = services if services is not None else [KAFKA, POSTGRES, S3]
    if S3 in wanted and LocalS3(settings).stop():
        stopped.append(S3)
    if KAFKA in wanted and not settings.external_kafka and LocalKafka(settings).stop():
        stopped.append(KAFKA)
    if POSTGRES in wanted and not settings.external_postgres and LocalPostgres(settings).stop():
        stopped.append(POSTGRES)
    return stopped


def local_pid(settings: Settings, service: str) -> int | None:
    """Pid of the project-local broker (KAFKA) or database server (POSTGRES); None when that service is
    external or not running."""
    if service == KAFKA:
        return None if settings.external_kafka else LocalKafka(settings).running_pid()
    if service == POSTGRES:
        return None if settings.external_postgres else LocalPostgres(settings).running_pid()
    raise ValueError(f"unknown service {service!r}: choose {KAFKA} or {POSTGRES}")


def status(settings: Settings) -> list[ServiceStatus]:
    """One line of state per backing service."""
    rows: list[ServiceStatus] = []
    if settings.external_kafka:
        try:
            check_kafka(settings.bootstrap_servers, timeout=3)
            rows.append(ServiceStatus(KAFKA, "external", settings.bootstrap_servers))
        except StackError as exc:
            rows.append(ServiceStatus(KAFKA, "unreachable", str(exc)))
    else:
        kafka = LocalKafka(settings)
        pid = kafka.running_pid()
        rows.append(
            ServiceStatus(
                KAFKA, "running" if pid else "stopped", f"pid {pid} {settings.bootstrap_servers}" if pid else ""
            )
        )
    if settings.external_postgres:
        try:
            check_postgres(settings.database_url, timeout=3)
            rows.append(ServiceStatus(POSTGRES, "external", settings.database_url))
        except StackError as exc:
            rows.append(ServiceStatus(POSTGRES, "unreachable", str(exc)))
    else:
        pg = LocalPostgres(settings)
        pid = pg.running_pid()
        rows.append(
            ServiceStatus(
                POSTGRES,
                "running" if pid else "stopped",
                f"pid {pid} 127.0.0.1:{settings.pg_port} data {pg.data_dir}" if pid else "",
            )
        )
    return rows
