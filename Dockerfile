# syntax=docker/dockerfile:1.7
# One image for every relay process. Default: `relay up` (API + worker, embedded Redis under
# /data when REDIS_URL is unset). In a cluster run `relay api` and `relay worker` from it.
#   docker build -t intuned-relay .
#   docker run --env-file .env --stop-timeout 30 -p 8080:8080 -v relay-data:/data intuned-relay
#   docker run --env-file .env --stop-timeout 30 intuned-relay relay worker
# --stop-timeout must exceed RELAY_SHUTDOWN_GRACE (20s): Docker's default of 10s would kill a
# delivery in flight, which is then sent again.

ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- build: a virtual environment with the locked dependencies and the relay itself ----------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first, so this layer is reused until uv.lock or pyproject.toml change.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=/app/uv.lock \
    --mount=type=bind,source=pyproject.toml,target=/app/pyproject.toml \
    uv sync --locked --no-dev --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY relay ./relay
COPY workers ./workers
# --reinstall-package: uv's cache (the cache mount) keys the project's own wheel on
# pyproject.toml only, so without it a rebuild after a code change could install the old code.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --reinstall-package intuned-relay

# ---- runtime: the environment only, a non-root user, tini as PID 1 ------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# tini forwards SIGTERM to the relay and reaps zombies. Versions come from the base image's
# Debian release (security updates included), hence no pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --home-dir /app --no-create-home relay \
    && mkdir -p /data \
    && chown relay:relay /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_REDIS_DIR=/data/redis
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# Right for whichever command runs (tini's child): `relay up` -> API and worker, `relay api` ->
# /healthz, `relay worker` -> its health key in Redis.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["relay", "check"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["relay", "up"]
