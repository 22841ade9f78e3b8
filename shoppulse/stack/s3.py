"""A local S3-compatible server for the lake: s3proxy (Apache-2.0) with its filesystem backend.

Started by the stack manager when SHOPPULSE_LAKE_URI is ``s3://...`` and no AWS_ENDPOINT_URL points at
an external S3, and by the test suite (the lake tests run against local disk and S3). The jar comes from
Maven Central (``org.gaul:s3proxy:<version>:jar-with-dependencies``), fetched once into the cache the
way the Kafka jars are. It listens on 127.0.0.1 only, refuses a second ``PUT If-None-Match: *`` (412) —
what delta-rs' commits rely on — and keeps objects as plain files under ``<home>/s3/data/<bucket>/``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from shoppulse.settings import Settings
from shoppulse.stack.errors import StackError
from shoppulse.stack.processes import PidFile, port_is_open, start_detached, stop_pid, tail


def local_s3_env(settings: Settings) -> dict[str, str]:
    """The AWS variables that point delta-rs, Polars and PyArrow at the local server."""
    return settings.local_s3_env()


class LocalS3:
    """Paths and lifecycle of the project-local s3proxy described by `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.home / "s3"
        self.data_dir = self.base / "data"
        self.config_path = self.base / "s3proxy.properties"
        self.log_path = settings.logs_dir / "s3proxy.log"
        self.pid_file = PidFile(self.base / "s3proxy.pid", marker=str(self.config_path))
        self.jar = settings.home / "cache" / f"s3proxy-{settings.s3proxy_version}-jar-with-dependencies.jar"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.s3_port}"

    def ensure_jar(self) -> Path:
        """Fetch the s3proxy jar from Maven Central into the cache once (with Maven, like the Kafka jars)."""
        if self.jar.exists():
            return self.jar
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven not found: it fetches the s3proxy jar (apt-get install maven), "
                "or set AWS_ENDPOINT_URL to use an existing S3 server"
            )
        staging = self.jar.parent / "s3proxy.partial"
        shutil.rmtree(staging, ignore_errors=True)
        artifact = f"org.gaul:s3proxy:{self.settings.s3proxy_version}:jar:jar-with-dependencies"
        proc = subprocess.run(
            [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={staging}"],
            capture_output=True,
            text=True,
            check=False,
        )
        fetched = list(staging.glob("s3proxy-*.jar"))
        if proc.returncode != 0 or not fetched:
            detail = next((line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line), "mvn failed")
            raise StackError(f"Maven could not fetch {artifact} (is Maven Central reachable?): {detail[:300]}")
        self.jar.parent.mkdir(parents=True, exist_ok=True)
        fetched[0].replace(self.jar)
        shutil.rmtree(staging, ignore_errors=True)
        return self.jar

    def write_config(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "# Written by `python -m shoppulse.stack`.\n"
            f"s3proxy.endpoint={self.endpoint}\n"
            "s3proxy.authorization=aws-v2-or-v4\n"
            f"s3proxy.identity={self.settings.local_s3_env()['AWS_ACCESS_KEY_ID']}\n"
            f"s3proxy.credential={self.settings.local_s3_env()['AWS_SECRET_ACCESS_KEY']}\n"
            "jclouds.provider=filesystem-nio2\n"
            f"jclouds.filesystem.basedir={self.data_dir}\n"
        )

    def ensure_bucket(self, bucket: str) -> None:
        """Create `bucket` (a directory of the filesystem backend) if it does not exist."""
        (self.data_dir / bucket).mkdir(parents=True, exist_ok=True)

    def running_pid(self) -> int | None:
        return self.pid_file.live_pid()

    def start(self, buckets: tuple[str, ...] = ("shoppulse",)) -> bool:
        """Start the server unless ours already runs; create `buckets`. True when this call started it."""
        if self.running_pid() is None:
            self.write_config()
        for bucket in buckets:
            self.ensure_bucket(bucket)
        if self.running_pid() is not None:
            self.wait_ready()
            return False
        if port_is_open(self.settings.s3_port):
            raise StackError(
                f"port {self.settings.s3_port} is in use by another process: set SHOPPULSE_S3_PORT to a free port, "
                "or AWS_ENDPOINT_URL to use the S3 server that is there"
            )
        java = shutil.which("java")
        if java is None:
            raise StackError("no Java found: s3proxy needs Java 17+ (apt-get install openjdk-17-jre-headless)")
        argv = [java, "-Xmx256m", "-jar", str(self.ensure_jar()), "--properties", str(self.config_path)]
        proc = start_detached(argv, self.log_path)
        self.pid_file.write(proc.pid)
        self.wait_ready(proc=proc)
        return True

    def wait_ready(self, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the server answers HTTP (any status: an anonymous request is refused with 403)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.pid_file.path.unlink(missing_ok=True)
                raise StackError(
                    f"s3proxy exited with code {proc.returncode}; see {self.log_path}:\n" + tail(self.log_path, 15)
                )
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310 - our own loopback endpoint
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise StackError(f"s3proxy did not become ready within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> bool:
        pid = self.running_pid()
        if pid is None:
            return False
        stop_pid(pid, timeout)
        self.pid_file.path.unlink(missing_ok=True)
        return True
