# One image for every ShopPulse Python service (Dagster code server, webserver, daemon, API, simulator).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PATH=/app/.venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app

# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY shoppulse ./shoppulse
COPY pipelines ./pipelines
COPY assets ./assets
COPY resources ./resources
COPY api ./api
COPY simulator ./simulator
RUN uv sync --frozen --no-dev

COPY dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY docker/workspace.yaml ${DAGSTER_HOME}/workspace.yaml
RUN mkdir -p /data/lake && useradd --system --create-home --uid 10001 shoppulse \
    && chown -R shoppulse /data/lake ${DAGSTER_HOME}
USER shoppulse

EXPOSE 3000 4266 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--http", "api.http_protocol:GuardedHttpToolsProtocol"]
