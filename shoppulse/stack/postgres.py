"""A project-local PostgreSQL cluster from the machine's server binaries (initdb/pg_ctl)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from shoppulse.settings import Settings
from shoppulse.stack.debian import apt_install, can_install
from shoppulse.stack.errors import StackError
from shoppulse.stack.processes import port_is_open, process_cmdline, tail, wait_until

SERVICE_USER = "shoppulse"
SERVER_TUNING = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "random_page_cost": "1.1",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "lz4",
}
"""Server settings given at every start (so clusters made before them get them too). Incremental folding
probes and inserts random keys (event, session and user ids) all over a big day's state: its indexes
stay in shared buffers, index probes are priced as the cache hits they are, and fewer checkpoints with
compressed full-page images cut the WAL those scattered writes cause."""


def find_server_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl: pg_config's bindir, then PATH, then /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates.extend(sorted(versions, key=lambda p: int(p.parent.name), reverse=True))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def install_server_binaries() -> Path:
    """Install Debian's `postgresql` package (root only), without its default cluster."""
    if not can_install():
        raise StackError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them (apt-get install postgresql), "
            "or set DATABASE_URL to use an existing server"
        )
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if "create_main_cluster = false" not in (conf.read_text() if conf.exists() else ""):
        with open(conf, "a") as handle:  # we run our own cluster; skip Debian's default one on 5432
            handle.write("\ncreate_main_cluster = false\n")
    apt_install(
        ["postgresql"],
        "PostgreSQL server binaries not found (the project-local cluster needs initdb and pg_ctl)",
        "set DATABASE_URL to use an existing server",
    )
    bindir = find_server_bindir()
    if bindir is None:
        raise StackError("installed 'postgresql' but still found no initdb/pg_ctl under /usr/lib/postgresql/*/bin")
    return bindir


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root: when we are root, run it as `postgres` (or a created user)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
    )
    return SERVICE_USER


class LocalPostgres:
    """Paths and lifecycle of the project-local cluster described by `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.user = _service_user()
        self.base = self._choose_base(settings.home / "postgres")
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log_path = self.base / "postgres.log"

    # --- placement ------------------------------------------------------------------------------
    def _run_as(
        self, argv: list[str], check: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, check=check, timeout=timeout, cwd="/", **kwargs
        )  # type: ignore[call-overload]

    def _choose_base(self, preferred: Path) -> Path:
        """`preferred` unless the service user cannot reach it (e.g. a 0700 parent); then a /var/tmp dir."""
        if self.user is None:
            return preferred
        preferred.mkdir(parents=True, exist_ok=True)
        shutil.chown(preferred, self.user, self.user)
        if self._run_as(["test", "-w", str(preferred)]).returncode == 0:
            return preferred
        digest = hashlib.sha256(str(self.settings.home).encode()).hexdigest()[:12]
        fallback = Path("/var/tmp") / f"shoppulse-postgres-{digest}"  # noqa: S108 - owned, 0700
        fallback.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(fallback, self.user, self.user)
        (preferred / "LOCATION").write_text(
            f"{self.user} cannot reach this directory, so the cluster lives in {fallback}\n"
        )
        return fallback

    # --- lifecycle ------------------------------------------------------------------------------
    def bindir(self) -> Path:
        return find_server_bindir() or install_server_binaries()

    def running_pid(self) -> int | None:
        """Pid of our postmaster when it runs (read from postmaster.pid and checked against /proc)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None
        cmdline = process_cmdline(pid)
        if cmdline is None or str(self.data_dir) not in cmdline:
            return None
        return pid

    def initdb(self, bindir: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.socket_dir, self.user, self.user)
        proc = self._run_as(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.settings.pg_user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        if proc.returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir}: {(proc.stderr or proc.stdout).strip()[-400:]}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# ShopPulse local cluster (python -m shoppulse.stack)\n"
                "max_connections = 300\n"
                "work_mem = 16MB\n"
                "maintenance_work_mem = 128MB\n"
                "log_line_prefix = '%m [%p] %q%u@%d '\n"
            )

    def start(self) -> bool:
        """Start the cluster unless ours already runs. Returns True when this call started it."""
        s = self.settings
        if self.running_pid() is not None:
            self.ensure_databases()
            return False
        if port_is_open(s.pg_port):
            raise StackError(
                f"port {s.pg_port} is in use by another process: set SHOPPULSE_PG_PORT to a free port, "
                "or DATABASE_URL to use the server that is there"
            )
        bindir = self.bindir()
        self.initdb(bindir)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.socket_dir, self.user, self.user)
        tuning = " ".join(f"-c {name}={value}" for name, value in SERVER_TUNING.items())
        options = f"-p {s.pg_port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 {tuning}"
        proc = self._run_as(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "90",
                "-o",
                options,
                "start",
            ]
        )
        if proc.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start (pg_ctl exit {proc.returncode}); see {self.log_path}:\n"
                + tail(self.log_path, 10)
            )
        self.ensure_databases()
        return True

    def ensure_databases(self) -> None:
        s = self.settings
        with psycopg.connect(s.local_database_url("postgres"), autocommit=True, connect_timeout=10) as conn:
            for name in (s.pg_database, s.pg_dagster_database):
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self, timeout: float = 30.0) -> bool:
        """Fast shutdown (then immediate), returning once the postmaster process is gone (pg_ctl returns
        when it removed its pid file; unmapping its shared buffers can take a moment more on a busy
        machine). True if it was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        bindir = self.bindir()
        proc = self._run_as(
            [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]
        )
        if proc.returncode != 0 and self.running_pid() is not None:
            self._run_as([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
        wait_until(lambda: process_cmdline(pid) is None, timeout)
        return True
