"""Session fixtures: the real stack (Kafka + PostgreSQL), unique topics and databases per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from shoppulse.lake.drain import CONSUMERS
from shoppulse.settings import Settings, get_settings
from shoppulse.stack import services
from shoppulse.stack.kafka import ensure_topic
from shoppulse.stack.s3 import LocalS3
from shoppulse.warehouse.db import with_database


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[services.UpReport]:
    """The real services, started if needed (and then stopped at the end of the session)."""
    report = services.up(settings)
    for key, value in settings.service_env().items():
        os.environ.setdefault(key, value)
    yield report
    services.down(settings, report.started)


@pytest.fixture
def kafka_topic(stack: services.UpReport, settings: Settings) -> Iterator[Callable[..., str]]:
    """Factory for fresh topics on the real broker; deleted after the test."""
    created: list[str] = []

    def make(name: str = "t", partitions: int = 6) -> str:
        topic = f"test.{name}.{uuid.uuid4().hex[:10]}"
        # Kept whatever their timestamps: tests send events dated at fixed past instants (deterministic
        # days), which the broker's time retention would delete at its next check (every 5 minutes),
        # under a test that is still reading them back.
        ensure_topic(settings.bootstrap_servers, topic, partitions, config={"retention.ms": "-1"})
        created.append(topic)
        return topic

    yield make
    for topic in created:  # a drain's cached consumer would keep asking for the deleted topic's offsets
        CONSUMERS.discard_topic(settings.bootstrap_servers, topic)
    if created:
        admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result()


@pytest.fixture
def pg_database(stack: services.UpReport, settings: Settings) -> Iterator[Callable[[], str]]:
    """Factory for fresh, empty databases on the real server (postgresql:// URLs); dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return with_database(settings.database_url, name)

    yield make
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def s3_server(stack: services.UpReport, settings: Settings) -> Iterator[dict[str, str]]:
    """The S3 server the lake tests use: AWS_ENDPOINT_URL's if set, else a local s3proxy (started here,
    stopped at the end of the session if this fixture started it). Yields the AWS variables."""
    if settings.aws_endpoint_url:
        yield {
            k: os.environ[k]
            for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if k in os.environ
        }
        return
    server = LocalS3(settings)
    started = server.start(buckets=(TEST_BUCKET,))
    yield settings.local_s3_env()
    if started:
        server.stop()


TEST_BUCKET = "shoppulse-test"


@pytest.fixture(params=["local", "s3"])
def lake_uri(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A fresh, empty lake on each backend: a local directory, and s3://shoppulse-test/<unique prefix>."""
    if request.param == "local":
        return tmp_path / "lake"
    for key, value in request.getfixturevalue("s3_server").items():
        monkeypatch.setenv(key, value)  # delta-rs, Polars and PyArrow (and child processes) read these
    return f"s3://{TEST_BUCKET}/lake-{uuid.uuid4().hex[:12]}"
