#!/usr/bin/env bash
# Installs what `make run` / `make test` need on a fresh machine, idempotently:
#   uv (pinned; into .shoppulse/bootstrap when not on PATH), the locked Python environment (.venv),
#   and with --test, Debian's docker-compose (used to validate docker-compose.yml; root only) and
#   Debian's prometheus and redis-server (promtool checks the alert rules; Redis carries the Celery
#   launcher's tests; root only).
# Kafka and PostgreSQL are installed/started by `python -m shoppulse.stack up`.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9

uv_bin() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  local boot=.shoppulse/bootstrap
  if [ ! -x "$boot/bin/uv" ]; then
    echo "bootstrap: installing uv $UV_VERSION into $boot" >&2
    python3 -m venv "$boot" >&2
    "$boot/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
  fi
  echo "$PWD/$boot/bin/uv"
}

UV=$(uv_bin)
# Bytecode compiled at install: imports then read it even where PYTHONDONTWRITEBYTECODE is set (as on
# these machines, where every process otherwise re-compiled dagster and polars: importing the
# Definitions took 7.2 s instead of 3.7 s). Already-compiled files are skipped (~1 s when up to date).
"$UV" sync --frozen --quiet --compile-bytecode

if [ "${1:-}" = "--test" ] && ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's docker-compose (validates docker-compose.yml without an engine)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  else
    echo "bootstrap: docker-compose not found and not root: the compose validation test will be skipped" >&2
  fi
fi
if [ "${1:-}" = "--test" ] && ! { command -v promtool && command -v redis-server; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's prometheus and redis-server (alert rule and Celery launcher tests)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus redis-server >/dev/null
  else
    echo "bootstrap: promtool/redis-server missing and not root: the Prometheus and Celery tests will be skipped" >&2
  fi
fi
echo "$UV"
