"""The bundled fake of the Intuned Run API (intuned-api.md §8), for tests, benchmarks and demos.

Four ways to run it:

- ``FakeIntuned(workspaces).build_app()``: the aiohttp application over thread-safe state;
- ``async with FakeIntunedServer(host="127.0.0.1", port=0, ...) as srv:`` in the current loop;
- ``start_in_thread(...) -> FakeIntunedHandle``: its own thread and event loop, so sync tests and
  pytest-asyncio's per-test loops can share it; ``.stop()`` ends it;
- ``run_fake_intuned(host, port, workspace_id, api_key, ...)``: serve until interrupted (the
  ``relay fake-intuned`` command).

Runs follow ``RunScript`` lifecycles (by polls or by the injectable clock); ``Fault`` injects
errors; ``RateLimitConfig`` imitates the documented 20 requests/minute per path. The control
API over HTTP is described in ``relay.fake_intuned.control``, the routes in
``relay.fake_intuned.routes``. The fake never reads the environment and must never be used to
talk to the real Intuned or be exposed beyond loopback in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any, Self

import msgspec
from aiohttp import web

from relay.closing import AsyncClosing
from relay.fake_intuned.control import add_control_routes
from relay.fake_intuned.models import DEFAULT_PREFIX, FakeConfig, RateLimitConfig, RunScript
from relay.fake_intuned.routes import add_intuned_routes
from relay.fake_intuned.sinks import SinkPusher
from relay.fake_intuned.state import FakeState

__all__ = [
    "FakeIntuned",
    "FakeIntunedHandle",
    "FakeIntunedServer",
    "run_fake_intuned",
    "start_in_thread",
]


class FakeIntuned(FakeState):
    """The fake's state (runs, faults, rate limit, counters) and its aiohttp application.

    ``workspaces`` maps each workspace id to its api key. Every control method inherited from
    ``FakeState`` (``create_run``, ``run_stats``, ``add_fault``, ``configure``, ``reset``...)
    may be called from any thread.
    """

    def build_app(self) -> web.Application:
        """The aiohttp application: control routes under /_fake/, Intuned routes under prefix."""
        app = web.Application()
        add_control_routes(app, self)
        add_intuned_routes(app, self)
        app.cleanup_ctx.append(SinkPusher(self).context)
        return app


class FakeIntunedServer(AsyncClosing):
    """``async with FakeIntunedServer(...) as srv`` serves a FakeIntuned in the running loop."""

    def __init__(
        self,
        fake: FakeIntuned | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 0.5,
        **fake_options: Any,
    ) -> None:
        self.state = fake if fake is not None else FakeIntuned(**fake_options)
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None

    @property
    def root_url(self) -> str:
        """``http://host:port`` (the control API lives at ``root_url + "/_fake/..."``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The Intuned base URL to give a client, e.g. ``http://127.0.0.1:PORT/api/v1/workspace``."""
        return self.root_url + self.state.prefix

    async def start(self) -> None:
        """Bind and start serving; ``port`` becomes the bound port."""
        runner = web.AppRunner(
            self.state.build_app(), access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop serving; in-flight requests get ``shutdown_timeout`` seconds to finish."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self


class FakeIntunedHandle:
    """A fake running in its own thread: its URLs and credentials, and ``state``.

    ``state`` is the thread-safe ``FakeIntuned`` itself: call its control operations directly
    (``handle.state.create_run(...)``, ``handle.state.add_fault(...)``); a process that did not
    start the fake uses the HTTP control API instead (``relay.fake_intuned.control_client``).
    """

    def __init__(self, server: FakeIntunedServer) -> None:
        self.server = server
        self.state: FakeIntuned = server.state
        self.workspace_id = self.state.default_workspace
        self.api_key = self.state.workspaces[self.workspace_id]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"FakeIntunedHandle(base_url={self.base_url!r}, workspace_id={self.workspace_id!r})"

    @property
    def base_url(self) -> str:
        """The Intuned base URL, e.g. ``http://127.0.0.1:PORT/api/v1/workspace``."""
        return self.server.base_url

    @property
    def root_url(self) -> str:
        """``http://host:port``, where ``/_fake/...`` lives."""
        return self.server.root_url

    def _run(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            async with self.server:
                ready.set()
                await self._stop_event.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            ready.set()

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the fake listens."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-intuned", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError("the fake Intuned did not start") from self._error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent); re-raise a failure of the thread."""
        loop, event, thread = self._loop, self._stop_event, self._thread
        if thread is None:
            return
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(event.set)
        thread.join(timeout)
        self._thread = None
        if self._error is not None:
            raise RuntimeError("the fake Intuned thread failed") from self._error


def start_in_thread(
    fake: FakeIntuned | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **fake_options: Any,
) -> FakeIntunedHandle:
    """Serve a FakeIntuned (given, or built from ``fake_options``) in its own thread."""
    handle = FakeIntunedHandle(FakeIntunedServer(fake, host=host, port=port, **fake_options))
    handle.start()
    return handle


def run_fake_intuned(
    host: str,
    port: int,
    workspace_id: str,
    api_key: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    rate_limit: bool = True,
    retry_after: bool = False,
    start_status: int = 201,
    retention_seconds: float | None = None,
    default_script: RunScript | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake until SIGINT/SIGTERM (the ``relay fake-intuned`` command).

    ``workspace_id``/``api_key``: the one workspace and its key (the CLI passes
    INTUNED_WORKSPACE_ID/INTUNED_API_KEY; this function reads no environment).
    ``rate_limit``: enforce 20 requests/minute per concrete path; ``retry_after``: send
    Retry-After on those 429s. ``start_status``: 201 (documented) or 200. ``retention_seconds``:
    runs older than this answer 404. ``default_script``: lifecycle of runs started through
    ``POST …/run/start`` (default: one poll pending, one started, then completed with a result
    echoing api and parameters). ``on_ready`` gets the base URL once the port is bound.
    """
    config = FakeConfig(
        start_status=start_status,
        retention_seconds=retention_seconds,
        rate_limit=RateLimitConfig(enabled=rate_limit, retry_after=retry_after),
    )
    if default_script is not None:
        config = msgspec.structs.replace(config, default_script=default_script)
    fake = FakeIntuned({workspace_id: api_key}, prefix=prefix, config=config)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        async with FakeIntunedServer(fake, host=host, port=port, shutdown_timeout=2.0) as srv:
            if on_ready is not None:
                on_ready(srv.base_url)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
