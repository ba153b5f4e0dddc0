"""The ``relay`` command: ``api``, ``worker``, ``up`` and ``fake-intuned``.

Each subcommand reads Settings from the environment once, prints a one-line error naming the
variable and exits 2 on bad configuration, then hands over to a function that tests can call.
"""

from __future__ import annotations

import asyncio
import os
import sys

import click

from relay.errors import ConfigError
from relay.settings import Settings


def load_settings(*, require_redis: bool = True) -> Settings:
    """Settings from the environment, or a one-line error and exit code 2."""
    try:
        return Settings.from_env(os.environ, require_redis=require_redis)
    except ConfigError as exc:
        click.echo(f"relay: configuration error: {exc}", err=True)
        sys.exit(2)


def check_redis(url: str) -> None:
    """Exit 2 with a clear message when Redis does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        click.echo(f"relay: configuration error: REDIS_URL does not answer ({exc})", err=True)
        sys.exit(2)
    finally:
        client.close()


@click.group()
@click.version_option(package_name="intuned-relay", prog_name="relay")
def main() -> None:
    """intuned-relay: Intuned runs in, signed webhooks out."""


@main.command()
def api() -> None:
    """Run the HTTP API on RELAY_HOST:RELAY_PORT."""
    settings = load_settings()
    assert settings.redis_url is not None
    check_redis(settings.redis_url)
    serve_api(settings)


def serve_api(settings: Settings) -> None:
    """Serve the API with granian (blocks until SIGTERM/SIGINT)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        "relay.api.asgi:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        log_access=False,
        workers_kill_timeout=int(settings.shutdown_grace),
    ).serve()


@main.command()
@click.option("--check", is_flag=True, help="Exit 0 if a worker reported health recently.")
def worker(check: bool) -> None:
    """Run the arq worker: polling Intuned and delivering webhooks."""
    from relay.observability import configure_logging
    from workers.runner import run_worker, worker_health

    settings = load_settings()
    assert settings.redis_url is not None
    if check:
        sys.exit(asyncio.run(worker_health(settings)))
    check_redis(settings.redis_url)
    configure_logging(settings.log_format)
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(run_worker(settings))


@main.command("fake-intuned")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
def fake_intuned(host: str, port: int) -> None:
    """Run the bundled fake of the Intuned Run API (development and demos)."""
    from relay.intuned.fake import run_fake_intuned

    workspace = os.environ.get("INTUNED_WORKSPACE_ID") or "123e4567-e89b-12d3-a456-426614174000"
    key = os.environ.get("INTUNED_API_KEY") or "fake-intuned-key"
    click.echo(f"fake Intuned on http://{host}:{port}/api/v1/workspace (workspace {workspace})")
    run_fake_intuned(host=host, port=port, workspace_id=workspace, api_key=key)
