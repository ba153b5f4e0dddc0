"""The ``relay`` command: ``api``, ``worker``, ``up``, ``demo`` and ``fake-intuned``.

Each subcommand reads Settings from the environment once, prints a one-line error naming the
variable and exits 2 on bad configuration, then hands over to a function that tests can call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from types import FrameType
from typing import NoReturn

import click

from relay.errors import ConfigError
from relay.settings import Settings
from relay.supervisor import stop_with_supervisor

# What `relay up` needs from the user beyond defaults, with what to put there.
REQUIRED_FOR_UP = {
    "INTUNED_WORKSPACE_ID": "<your Intuned workspace id>",
    "INTUNED_API_KEY": "<your Intuned API key>",
    "RELAY_API_KEYS": "<client>:<a key of 16+ characters>",
}


def fail(message: str) -> NoReturn:
    """Print ``relay: configuration error: <message>`` on one line and exit 2."""
    click.echo(f"relay: configuration error: {' '.join(message.split())}", err=True)
    sys.exit(2)


def load_settings(*, require_redis: bool = True) -> Settings:
    """Settings from the environment, or a one-line error and exit code 2."""
    try:
        return Settings.from_env(os.environ, require_redis=require_redis)
    except ConfigError as exc:
        fail(str(exc))


def check_redis(url: str) -> None:
    """Exit 2 with a clear message when Redis does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(f"REDIS_URL does not answer ({exc})")
    finally:
        client.close()


def check_port_free(host: str, port: int, variable: str) -> None:
    """Exit 2 naming ``variable`` when ``host:port`` cannot be bound (taken, or not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            fail(f"{variable} {port} cannot be used on {host} ({exc.strerror}); set a free port")


def check_ports(settings: Settings, *, api: bool, worker: bool) -> None:
    """The ports the API and/or the worker will listen on are free."""
    if api:
        check_port_free(settings.host, settings.port, "RELAY_PORT")
    if worker and settings.worker_metrics_port:
        # One metrics port per worker process: RELAY_WORKER_METRICS_PORT + i.
        for i in range(settings.worker_process_count):
            port = settings.worker_metrics_port + i
            check_port_free("0.0.0.0", port, "RELAY_WORKER_METRICS_PORT")


@click.group()
@click.version_option(package_name="intuned-relay", prog_name="relay")
def main() -> None:
    """intuned-relay: Intuned runs in, signed webhooks out."""


@main.command()
@click.option("--check", is_flag=True, help="Exit 0 if the API on RELAY_PORT answers /healthz.")
def api(check: bool) -> None:
    """Run the HTTP API on RELAY_HOST:RELAY_PORT."""
    if check:
        sys.exit(api_health(os.environ))
    settings = load_settings()
    assert settings.redis_url is not None
    check_redis(settings.redis_url)
    check_ports(settings, api=True, worker=False)
    stop_with_supervisor(os.environ)
    serve_api(settings)


def api_health(environ: Mapping[str, str]) -> int:
    """``relay api --check`` (the image's HEALTHCHECK): 0 when local /healthz answers 200."""
    from relay.supervisor import http_ok

    port = (environ.get("RELAY_PORT") or "8080").strip()
    url = f"http://127.0.0.1:{port}/healthz"
    if http_ok(url, timeout=3.0):
        return 0
    click.echo(f"relay api: {url} does not answer", err=True)
    return 1


@main.command()
@click.option(
    "--pid", default=1, show_default=True, help="Probe the relay process at or below this pid."
)
def check(pid: int) -> None:
    """Health probe for whichever relay command runs here (the image's HEALTHCHECK).

    Finds `relay up`, `relay api` or `relay worker` at or below PID 1 (tini's child in the
    image) and probes what it is: the API's /healthz, the worker's health key in Redis, or both.
    """
    from relay.healthcheck import check as probe

    sys.exit(probe(os.environ, root=pid, echo=click.echo, api_health=api_health))


def serve_api(settings: Settings) -> None:
    """Serve the API with granian (blocks until SIGTERM/SIGINT, then drains)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from relay.observability import configure_logging, logging_dictconfig

    configure_logging(settings.log_format)
    Granian(
        "relay.api.asgi:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=settings.api_worker_count,
        log_access=False,
        log_dictconfig=logging_dictconfig(settings.log_format),
        workers_kill_timeout=int(settings.shutdown_grace),
    ).serve()


@main.command()
@click.option("--check", is_flag=True, help="Exit 0 if a worker reported health recently.")
def worker(check: bool) -> None:
    """Run the arq worker: polling Intuned and delivering webhooks."""
    settings = load_settings()
    assert settings.redis_url is not None
    if check:
        from workers.health import worker_health

        sys.exit(asyncio.run(worker_health(settings.redis_url)))
    check_redis(settings.redis_url)
    check_ports(settings, api=False, worker=True)
    stop_with_supervisor(os.environ)
    if settings.worker_process_count > 1:
        sys.exit(run_workers(settings, os.environ))
    from relay.observability import configure_logging
    from workers.runner import run_worker, tune_gc

    configure_logging(settings.log_format)
    tune_gc()
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(run_worker(settings))


def run_workers(settings: Settings, environ: Mapping[str, str]) -> int:
    """RELAY_WORKER_PROCESSES > 1: supervise that many single-process ``relay worker`` children.

    SIGTERM/SIGINT stop them all gracefully; one dying on its own stops the rest and exits
    non-zero, so the container restarts whole (as ``relay up`` does).
    """
    from relay.supervisor import relay_commands, supervise

    count = settings.worker_process_count
    return supervise(
        dict(environ),
        grace=settings.shutdown_grace,
        echo=lambda line: click.echo(line, err=True),
        health_url=None,
        commands=relay_commands(
            api=False, workers=count, metrics_port=settings.worker_metrics_port
        ),
        on_ready=lambda: click.echo(f"relay: {count} worker processes; SIGTERM stops all"),
    )


def missing_for_up(environ: Mapping[str, str]) -> list[str]:
    """The variables ``relay up`` cannot do without that are unset."""
    return [name for name in REQUIRED_FOR_UP if not (environ.get(name) or "").strip()]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@main.command()
@click.option("--demo", is_flag=True, help="Run `relay demo --keep-running` instead.")
def up(demo: bool) -> None:
    """API + worker in one command; an embedded Redis (AOF on) when REDIS_URL is unset."""
    if demo:
        from relay.demo import run_demo

        sys.exit(run_demo(click.echo, keep_running=True))
    missing = missing_for_up(os.environ)
    if missing:
        fail(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
            + " ".join(f"{name}={REQUIRED_FOR_UP[name]}" for name in missing)
            + " (see .env.example), or try `relay demo` to watch the relay work with a fake Intuned"
        )
    settings = load_settings(require_redis=False)
    # Until the supervisor takes the signals over, these unwind like Ctrl-C (stopping Redis).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    sys.exit(run_up(settings, os.environ))


def run_up(settings: Settings, environ: Mapping[str, str]) -> int:
    """Start the embedded Redis if needed, then supervise ``relay api`` and ``relay worker``."""
    from relay.embedded_redis import EmbeddedRedis, exclusive_data_dir
    from relay.supervisor import local_url, relay_commands, supervise

    check_ports(settings, api=True, worker=True)
    env = dict(environ)
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None:
            try:
                data_dir = stack.enter_context(exclusive_data_dir(settings.embedded_redis_dir))
                server = EmbeddedRedis(data_dir, persistent=True)
                if server.stop_orphan():
                    click.echo("relay: stopped an embedded Redis left running by a killed relay up")
                stack.callback(server.stop)  # before start: a SIGTERM mid-start still stops it
                server.start()
            except ConfigError as exc:
                fail(str(exc))
            except (OSError, RuntimeError) as exc:
                fail(f"RELAY_REDIS_DIR: the embedded Redis did not start ({exc})")
            env["REDIS_URL"] = server.url
            click.echo(
                f"relay: embedded Redis on {server.url} (AOF on, data in {data_dir.resolve()})"
            )
        else:
            check_redis(settings.redis_url)
        base = local_url(settings.host, settings.port, "")

        workers = settings.worker_process_count
        what = "a worker" if workers == 1 else f"{workers} worker processes"

        def ready() -> None:
            click.echo(f"relay: up; API on {base} and {what}; Ctrl-C or SIGTERM stops all")

        return supervise(
            env,
            grace=settings.shutdown_grace,
            echo=lambda line: click.echo(line, err=True),
            health_url=base + "/healthz",
            commands=relay_commands(
                api=True, workers=workers, metrics_port=settings.worker_metrics_port
            ),
            on_ready=ready,
        )


@main.command()
@click.option("--keep-running", is_flag=True, help="Stay up afterwards for your own curl calls.")
@click.option("--port", default=0, type=int, help="Port of the relay API (default: a free one).")
def demo(keep_running: bool, port: int) -> None:
    """Watch the relay work: fake Intuned, a receiver, scripted runs, verified webhooks."""
    from relay.demo import run_demo

    sys.exit(run_demo(click.echo, keep_running=keep_running, port=port))


FAKE_WORKSPACE_DEFAULT = "123e4567-e89b-12d3-a456-426614174000"
FAKE_KEY_DEFAULT = "fake-intuned-key"
FAKE_HELP = f"""Run the bundled fake of the Intuned Run API (development, demos, tests).

\b
Intuned routes (send header x-api-key: <--api-key>):
  POST /api/v1/workspace/<workspace>/projects/<project>/run/start
  GET  /api/v1/workspace/<workspace>/projects/<project>/run/<runId>/result
Point the relay at it with INTUNED_API_BASE_URL=http://HOST:PORT/api/v1/workspace,
INTUNED_WORKSPACE_ID=<--workspace-id> and INTUNED_API_KEY=<--api-key>. Without those
variables the fake expects workspace {FAKE_WORKSPACE_DEFAULT} and key {FAKE_KEY_DEFAULT}.

\b
Control API (no key; camelCase JSON):
  POST /_fake/runs                        create a scripted run -> {{runId}}
  GET  /_fake/runs, /_fake/runs/<runId>   run ids; one run's polls and log
  POST /_fake/runs/<runId>/push-faults    {{lost, delaySeconds, duplicates, earlySeconds}}
  GET  /_fake/pushes[?runId=]             sink pushes sent (webhook sinks)
  POST /_fake/faults, DELETE /_fake/faults   arm / clear faults
  GET|POST /_fake/config, /_fake/rate-limit  read / merge switches
  GET  /_fake/stats, /_fake/starts        counters; accepted start bodies
  POST /_fake/reset                       forget everything

\b
A run that completes after two polls answered pending, then one started:
  curl -s -X POST http://127.0.0.1:8001/_fake/runs -H 'content-type: application/json' \\
    -d '{{"projectName": "demo-project", "script": {{"pendingPolls": 2, "startedPolls": 1,
         "outcome": "completed", "result": {{"hello": "world"}}}}}}'
Script fields: pendingPolls, startedPolls, pendingSeconds, startedSeconds, outcome
(completed|failed|canceled), result, error, reason, message, extendedPayloads.
A run created with "sink": {{"type": "webhook", "url": ..., "headers": {{...}}}} (or started
with one) is POSTed Intuned's sink payload when it ends, retried on non-2xx.

\b
Faults (POST /_fake/faults {{"kind": ..., "times": n|null, "runId"?, "endpoint"?}}):
  error_500, gateway (status 502/503/504), slow (delayMs), reset, malformed_json,
  wrong_shape, rate_limited (retryAfter), unknown_enum (field), big_result (sizeBytes),
  hang (start: create the run, answer after delayMs), refuse (start: a 4xx, status).
Defaults: 20 requests/minute per path (--no-rate-limit to lift it); runs started through
run/start complete after one pending and one started poll (POST /_fake/config
{{"defaultScript": ...}} changes that).
"""


@main.command("fake-intuned", help=FAKE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option(
    "--workspace-id",
    envvar="INTUNED_WORKSPACE_ID",
    default=FAKE_WORKSPACE_DEFAULT,
    show_default=True,
    show_envvar=True,
    help="The one workspace the fake serves.",
)
@click.option(
    "--api-key",
    envvar="INTUNED_API_KEY",
    default=FAKE_KEY_DEFAULT,
    show_default=True,
    show_envvar=True,
    help="The x-api-key the fake expects.",
)
@click.option("--rate-limit/--no-rate-limit", default=True, show_default=True)
def fake_intuned(host: str, port: int, workspace_id: str, api_key: str, rate_limit: bool) -> None:
    from relay.fake_intuned import run_fake_intuned

    click.echo(f"fake Intuned on http://{host}:{port}/api/v1/workspace")
    click.echo(f"  workspace id {workspace_id}, x-api-key {api_key}")
    click.echo(f"  control API  http://{host}:{port}/_fake/ (see relay fake-intuned --help)")
    run_fake_intuned(
        host=host, port=port, workspace_id=workspace_id, api_key=api_key, rate_limit=rate_limit
    )
