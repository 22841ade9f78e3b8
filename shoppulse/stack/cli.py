"""`python -m shoppulse.stack`: up, down, status, logs, env, run (whole stack) and test (suite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from shoppulse.serving.readiness import watchdog_state_path
from shoppulse.settings import PROJECT_ROOT, Settings, get_settings
from shoppulse.stack import services
from shoppulse.stack.apps import CODE_SERVER, DAEMON, Supervisor, app_processes, read_supervisor_status
from shoppulse.stack.browser import ensure_chromium
from shoppulse.stack.errors import StackError
from shoppulse.stack.kafka import LocalKafka
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.stack.watchdog import DrainWatchdog, ServiceWatch, reload_code_location


def _say(message: str, loud: bool) -> None:
    """A supervision message on the terminal of `run` (loud ones in red on stderr), time-stamped."""
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    if loud:
        click.secho(line, fg="red", err=True)
    else:
        click.echo(line)


def _watch(watchdog: DrainWatchdog) -> None:
    """One watchdog check; its own failure (an unreadable lake, say) is reported, never fatal."""
    try:
        watchdog.check()
    except Exception as exc:  # supervision must go on
        _say(f"drain watchdog check failed: {type(exc).__name__}: {exc}", True)


def _reload(webserver_url: str, reason: str, done: Callable[[], None]) -> None:
    """Reload the code location in the background (it takes as long as loading the definitions), so
    supervision goes on meanwhile; `done` runs when it returns. The watchdog judges by the lake whether
    it worked."""
    _say(f"reloading the code location (fresh gRPC child): {reason}", True)

    def reload() -> None:
        try:
            reload_code_location(webserver_url)
        except StackError as exc:  # e.g. the old, dead child cannot be shut down: the new one may run anyway
            _say(f"the reload answered an error ({exc}); judging by the lake whether it worked", True)
        else:
            _say("code location reloaded", False)
        done()

    threading.Thread(target=reload, name="reload-code-location", daemon=True).start()


def _fail(exc: StackError) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


def _report_up(report: services.UpReport) -> None:
    parts = [
        f"started {', '.join(report.started)}" if report.started else "",
        f"already running {', '.join(report.already_running)}" if report.already_running else "",
        f"external {', '.join(report.external)}" if report.external else "",
    ]
    click.echo(f"stack up in {report.seconds:.1f}s: " + "; ".join(p for p in parts if p))


class StopRequestedError(BaseException):
    """Raised from the signal handler to unwind `run`/`test` cleanly. A BaseException, like
    KeyboardInterrupt: a Ctrl-C that lands inside a step that reports and survives its own failures
    (`except Exception`, e.g. a watchdog check) must still stop the run."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequestedError(signal.Signals(signum).name)


@click.group()
def cli() -> None:
    """Manage ShopPulse's local stack (Kafka, PostgreSQL, Dagster, API, simulator)."""


@cli.command()
def up() -> None:
    """Start Kafka and PostgreSQL (or check the external ones) and create the events topic. Idempotent."""
    try:
        _report_up(services.up(get_settings()))
    except StackError as exc:
        _fail(exc)


@cli.command()
def down() -> None:
    """Stop what `up`/`run` started: app processes, then the local broker and cluster."""
    settings = get_settings()
    leftovers = Supervisor(settings, []).stop_leftovers()
    stopped = services.down(settings)
    names = leftovers + stopped
    click.echo(f"stopped {', '.join(names)}" if names else "nothing was running")


@cli.command()
def status() -> None:
    """Show each service's state."""
    settings = get_settings()
    for row in services.status(settings):
        click.echo(f"{row.name:<20} {row.state:<12} {row.detail}")
    supervised = (read_supervisor_status(settings) or {}).get("apps", {})
    for app in app_processes(settings):
        pid = app.pid_file(settings).live_pid()
        seen = supervised.get(app.name)
        state = seen["state"] if seen else ("running" if pid else "stopped")
        detail = f"pid {pid}" if pid else ""
        if seen:
            detail += f"  restarts {seen['restarts']}" + (f" (last: {seen['last_exit']})" if seen["last_exit"] else "")
        click.echo(f"{app.name:<20} {state:<12} {detail.strip()}")


def _log_paths(settings: Settings) -> dict[str, str]:
    paths = {"kafka": str(LocalKafka(settings).log_path)}
    if not settings.external_postgres:
        paths["postgres"] = str(LocalPostgres(settings).log_path)
    for app in app_processes(settings):
        paths[app.name] = str(app.log_path(settings))
    return paths


@cli.command()
@click.argument("service", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows.")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines to show.")
def logs(service: str | None, follow: bool, lines: int) -> None:
    """Show a service's log; without SERVICE, list the log files."""
    paths = _log_paths(get_settings())
    if service is None:
        for name, path in paths.items():
            click.echo(f"{name:<20} {path}{'' if Path(path).exists() else '  (none yet)'}")
        return
    if service not in paths:
        raise click.BadParameter(f"unknown service {service!r}; one of: {', '.join(paths)}", param_hint="SERVICE")
    args = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [paths[service]]
    os.execvp("tail", args)  # noqa: S606 - hand the terminal to tail


@cli.command()
def env() -> None:
    """Print `export` lines pointing a shell at this stack (eval "$(python -m shoppulse.stack env)")."""
    for key, value in get_settings().service_env().items():
        click.echo(f"export {key}={value}")


@cli.command()
@click.option("--simulator/--no-simulator", default=True, help="Also run the live traffic simulator.")
def run(simulator: bool) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops everything this command started."""
    settings = get_settings()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    report = services.UpReport()
    supervisor = Supervisor(settings, app_processes(settings, with_simulator=simulator), report=_say)
    webserver_url = f"http://127.0.0.1:{settings.dagster_port}"
    watchdog = DrainWatchdog(
        settings,
        heals=[
            lambda reason: _reload(webserver_url, reason, done=lambda: watchdog.restart_grace()),
            lambda reason: supervisor.restart(CODE_SERVER, reason),
        ],
        # The drain runs in the code server, driven by the daemon: a (re)start of either gets the grace.
        code_server_started_at=lambda: max(supervisor.states[name].started_at for name in (CODE_SERVER, DAEMON)),
        report=_say,
    )
    service_watch = ServiceWatch(settings, report=_say)
    began = time.monotonic()
    try:
        leftovers = supervisor.stop_leftovers()
        if leftovers:
            click.echo(f"stopped leftovers of an earlier run: {', '.join(leftovers)}")
        report = services.up(settings)
        _report_up(report)
        env = {**os.environ, **settings.service_env()}
        supervisor.start_all(env)
        click.echo(
            f"\nShopPulse is running (ready in {time.monotonic() - began:.1f}s)\n"
            f"  Dashboard       http://{settings.api_host}:{settings.api_port}/dashboard\n"
            f"  Dagster UI      http://127.0.0.1:{settings.dagster_port}\n"
            f"  API             http://{settings.api_host}:{settings.api_port}  (docs: /docs)\n"
            f"  Kafka           {settings.bootstrap_servers}  topic {settings.events_topic}\n"
            f"  PostgreSQL      {settings.database_url}\n"
            f"  Lake            {settings.lake_location}  (Delta table"
            f"{'; s3proxy ' + settings.local_s3_env()['AWS_ENDPOINT_URL'] if settings.local_s3 else ''})\n"
            f"  Metrics         http://127.0.0.1:{settings.metrics_port}/metrics  (pipeline; the API's: /metrics)\n"
            + (
                f"  Prometheus      http://127.0.0.1:{settings.prometheus_port}  (alert rules: ops/prometheus)\n"
                if "prometheus" in supervisor.states
                else ""
            )
            + f"  Logs            {settings.logs_dir}  (python -m shoppulse.stack logs -f SERVICE)\n"
            "A process that dies is restarted; a stalled drain is healed. Press Ctrl-C to stop.",
        )
        while True:
            service_watch.check()
            supervisor.supervise()
            _watch(watchdog)
            time.sleep(0.5)
    except StopRequestedError:
        click.echo("\nstopping ...")
    except StackError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        _shutdown(settings, supervisor, report)
        sys.exit(1)
    _shutdown(settings, supervisor, report)


def _shutdown(settings: Settings, supervisor: Supervisor, report: services.UpReport) -> None:
    # A second Ctrl-C (or the SIGTERM a wrapper forwards) must not abandon the shutdown half way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    supervisor.stop_all()
    watchdog_state_path(settings.home).unlink(missing_ok=True)
    stopped = services.down(settings, report.started)
    click.echo("stopped" + (f" (and {', '.join(stopped)}, which this run started)" if stopped else ""))


@cli.command()
@click.option(
    "--webserver-url",
    default=None,
    help="Dagster webserver whose GraphQL API reloads the code location (default: the local one).",
)
def watchdog(webserver_url: str | None) -> None:
    """Run only the drain watchdog (e.g. beside docker-compose's services): heal a stalled drain by
    reloading the code location through the webserver, until stopped."""
    settings = get_settings()
    url = webserver_url or f"http://127.0.0.1:{settings.dagster_port}"
    started = time.monotonic()
    dog = DrainWatchdog(
        settings,
        heals=[lambda reason: _reload(url, reason, done=lambda: dog.restart_grace())],
        code_server_started_at=lambda: started,
        report=_say,
    )
    _say(f"drain watchdog on {settings.bootstrap_servers} topic {settings.events_topic}, healing via {url}", False)
    try:
        while True:
            _watch(dog)
            time.sleep(0.5)
    except KeyboardInterrupt:
        dog.remove_state()


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def test(ctx: click.Context) -> None:
    """Bring the stack up, run pytest (extra args are passed on), stop what this command started."""
    settings = get_settings()
    signal.signal(signal.SIGTERM, _raise_stop)
    report = services.UpReport()
    code = 1
    try:
        report = services.up(settings)
        _report_up(report)
        # the browser tests drive Debian's Chromium (installed here when missing)
        env = {**os.environ, **settings.service_env(), "SHOPPULSE_CHROMIUM": ensure_chromium(settings)}
        began = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "pytest", *ctx.args], env=env, cwd=PROJECT_ROOT)
        click.echo(f"pytest finished in {time.monotonic() - began:.0f}s with exit code {code}")
    except StackError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
    except (StopRequestedError, KeyboardInterrupt):
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = services.down(settings, report.started)
        if stopped:
            click.echo(f"stopped {', '.join(stopped)}")
    sys.exit(code)


def main() -> None:
    cli(prog_name="python -m shoppulse.stack")
