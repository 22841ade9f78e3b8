"""A local Apache Kafka 4.x broker (one combined KRaft broker+controller) run from Maven Central jars."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from shoppulse.settings import Settings
from shoppulse.stack.errors import StackError
from shoppulse.stack.processes import PidFile, port_is_open, start_detached, stop_pid, tail, wait_until

POM = Path(__file__).with_name("pom.xml")
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class LocalKafka:
    """Paths and lifecycle of the project-local broker described by `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.home / "kafka"
        self.data_dir = self.base / "data"
        self.config_path = self.base / "server.properties"
        self.log4j_path = self.base / "log4j2.properties"
        self.log_path = settings.logs_dir / "kafka.log"
        self.pid_file = PidFile(self.base / "kafka.pid", marker=str(self.config_path))
        self.libs_dir = settings.home / "cache" / f"kafka-{settings.kafka_version}"

    # --- installation -------------------------------------------------------------------------
    def java(self) -> str:
        """Path of a Java 17+ runtime, or a StackError naming the fix."""
        java = shutil.which("java")
        if java is None:
            raise StackError(
                "no Java found: Kafka 4 needs Java 17+ (apt-get install openjdk-17-jre-headless), "
                "or set KAFKA_BOOTSTRAP_SERVERS to use an existing broker"
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
        match = re.search(r'version "(\d+)', out)
        if match is None or int(match.group(1)) < 17:
            raise StackError(
                f"Java 17+ required by Kafka 4, found: {out.splitlines()[0] if out else 'unknown'} "
                "(apt-get install openjdk-17-jre-headless)"
            )
        return java

    def ensure_jars(self) -> Path:
        """Resolve the broker jars from Maven Central into the cache once; later calls reuse it."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven not found: it fetches the Kafka broker jars (apt-get install maven), "
                "or set KAFKA_BOOTSTRAP_SERVERS to use an existing broker"
            )
        staging = self.libs_dir.with_name(self.libs_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.settings.kafka_version}",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = next(
                (line for line in (proc.stdout + proc.stderr).splitlines() if "[ERROR]" in line),
                "mvn failed",
            )
            raise StackError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{self.settings.kafka_version} "
                f"(is Maven Central reachable?): {detail.replace('[ERROR]', '').strip()[:300]}"
            )
        (staging / ".complete").write_text(self.settings.kafka_version + "\n")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        return self.libs_dir

    def write_config(self) -> None:
        s = self.settings
        self.base.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join(
                [
                    "# Written by `python -m shoppulse.stack up`; edits are overwritten.",
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    f"num.partitions={s.events_topic_partitions}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "message.max.bytes=2097152",
                    "",
                ]
            )
        )
        self.log4j_path.write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.file.type = File",
                    "appender.file.name = file",
                    f"appender.file.fileName = {self.log_path}",
                    "appender.file.layout.type = PatternLayout",
                    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.file.ref = file",
                    "logger.state.name = state.change.logger",
                    "logger.state.level = WARN",
                    "",
                ]
            )
        )

    def classpath(self) -> str:
        return f"{self.libs_dir}/*"

    def format_storage(self, java: str) -> None:
        """Format KRaft storage once (a formatted data dir has meta.properties)."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        proc = subprocess.run(
            [
                java,
                "-cp",
                self.classpath(),
                STORAGE_TOOL,
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed: {proc.stdout}{proc.stderr}".strip())

    # --- lifecycle ------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        return self.pid_file.live_pid()

    def start(self) -> bool:
        """Start the broker unless ours already runs. Returns True when this call started it."""
        s = self.settings
        if self.running_pid() is not None:
            self.wait_ready()
            return False
        for port, var in (
            (s.kafka_port, "SHOPPULSE_KAFKA_PORT"),
            (s.kafka_controller_port, "SHOPPULSE_KAFKA_CONTROLLER_PORT"),
        ):
            if port_is_open(port):
                raise StackError(
                    f"port {port} is in use by another process: set {var} to a free port, "
                    "or KAFKA_BOOTSTRAP_SERVERS to use the broker that is there"
                )
        java = self.java()
        self.ensure_jars()
        self.write_config()
        self.format_storage(java)
        argv = [
            java,
            f"-Xmx{s.kafka_heap}",
            f"-Xms{s.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            self.classpath(),
            MAIN_CLASS,
            str(self.config_path),
        ]
        proc = start_detached(argv, self.settings.logs_dir / "kafka.stdout.log")
        self.pid_file.write(proc.pid)
        self.wait_ready(proc=proc)
        return True

    def wait_ready(self, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until a metadata request succeeds (the broker is registered and serving)."""
        deadline = time.monotonic() + timeout
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.pid_file.path.unlink(missing_ok=True)
                raise StackError(
                    f"Kafka exited with code {proc.returncode} while starting; see {self.log_path}:\n"
                    + tail(self.log_path, 15)
                    + tail(self.settings.logs_dir / "kafka.stdout.log", 15)
                )
            if not port_is_open(self.settings.kafka_port):
                time.sleep(0.3)
                continue
            admin = admin or AdminClient({"bootstrap.servers": self.settings.bootstrap_servers, "log_level": 0})
            try:
                meta = admin.list_topics(timeout=2)
                if meta.brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.3)
        raise StackError(f"Kafka did not become ready within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 45.0) -> bool:
        """Stop our broker (SIGTERM = controlled shutdown, SIGKILL after `timeout`). True if it ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        stop_pid(pid, timeout)
        self.pid_file.path.unlink(missing_ok=True)
        return True


EVENTS_TOPIC_CONFIG = {
    # Producers stamp events with their own time (history is produced with historical timestamps), so
    # time-based retention would delete backfill data at once: bound the topic by size instead.
    "retention.ms": "-1",
    "retention.bytes": str(2 * 1024**3),
    "message.timestamp.type": "CreateTime",
}


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    timeout: float = 30.0,
    config: dict[str, str] | None = None,
) -> bool:
    """Create `topic` (with topic `config`) unless it exists. Returns True when this call created it."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    deadline = time.monotonic() + timeout
    while True:
        if topic in admin.list_topics(timeout=10).topics:
            return False
        new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
        future = admin.create_topics([new_topic])[topic]
        try:
            future.result(timeout=10)
            wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 10)
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                return False
            if not err.retriable() or time.monotonic() > deadline:
                raise StackError(f"could not create topic {topic!r}: {err.str()}") from exc
            time.sleep(0.5)
