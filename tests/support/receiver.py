"""A real webhook receiver on loopback for tests and benchmarks: records requests, behaves by path.

It runs an ``aiohttp.web`` server in its own thread with its own event loop, so a test's loop (and
a worker running in it) is never blocked by the receiver, and other processes can reach it by port.
Behaviour is chosen by the first path segments; any extra trailing segment (``/ok/sub-7``,
``/flaky/2/sub-7``) is ignored by the behaviour and only lets tests tell subscriptions apart:

    /ok                 200
    /status/{code}      that status (200-599); ``?retry_after=V`` adds ``Retry-After: V`` verbatim
    /slow/{ms}          sleeps ms milliseconds, then 200
    /redirect           302 to /ok
    /flaky/{n}          500 for the first n requests per distinct webhook-id (per path without
                        one), then 200
    /reset              aborts the connection (TCP RST) without answering
    /gone               410
    /big                200 with a 5 KiB body

Every request is recorded on arrival (before any sleep), with its raw body bytes. This module is
test support: it must never be imported by ``relay``.

Run standalone (for demos and benchmarks): ``python -m tests.support.receiver --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

BIG_BODY = b"x" * 5 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver saw it; header names are lower-cased."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    monotonic: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival

    @property
    def webhook_id(self) -> str | None:
        """The ``webhook-id`` header, if any."""
        return self.headers.get("webhook-id")


def verify(request: ReceivedRequest, secret: str | list[str] | tuple[str, ...]) -> Any:
    """Verify a recorded request exactly as a Standard Webhooks receiver would; return the JSON.

    With several secrets, any one verifying is enough (what a receiver does during a rotation).
    Raises ``standardwebhooks.webhooks.WebhookVerificationError`` when none verifies.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    last: Exception | None = None
    for one in secrets:
        try:
            return Webhook(one).verify(request.body, request.headers)
        except Exception as exc:
            last = exc
    assert last is not None
    raise last


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    requests: list[ReceivedRequest] = field(default_factory=list)
    flaky_counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def record(self, req: ReceivedRequest) -> None:
        with self.changed:
            self.requests.append(req)
            self.changed.notify_all()

    def flaky_attempt(self, key: str) -> int:
        with self.lock:
            self.flaky_counts[key] += 1
            return self.flaky_counts[key]


def _abort(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0) and no HTTP answer."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()


def _make_app(state: _State) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        state.record(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                monotonic=time.monotonic(),
                wall=time.time(),
            )
        )
        parts = [p for p in request.path.split("/") if p]
        kind = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else ""
        if kind == "ok":
            return web.json_response({"ok": True})
        if kind == "gone":
            return web.Response(status=410, text="gone")
        if kind == "big":
            return web.Response(body=BIG_BODY, content_type="text/plain")
        if kind == "redirect":
            raise web.HTTPFound(location="/ok")
        if kind == "status" and arg.isdigit() and 200 <= int(arg) <= 599:
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            code = int(arg)
            text = None if code in (204, 304) else f"status {code}"
            return web.Response(status=code, text=text, headers=headers)
        if kind == "slow" and arg.isdigit():
            await asyncio.sleep(int(arg) / 1000)
            return web.json_response({"ok": True})
        if kind == "flaky" and arg.isdigit():
            key = request.headers.get("webhook-id") or request.path
            if state.flaky_attempt(key) <= int(arg):
                return web.Response(status=500, text="flaky")
            return web.json_response({"ok": True})
        if kind == "reset":
            _abort(request)
            # Nothing can be answered on an aborted connection; end the handler quietly.
            raise asyncio.CancelledError
        return web.Response(status=404, text=f"no behaviour for {request.path}")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class ReceiverHandle:
    """A running receiver: its address, what it received, and how to stop it."""

    def __init__(self, host: str, port: int, state: _State, stop: Any) -> None:
        self.host = host
        self.port = port
        self._state = state
        self._stop = stop

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/ok") -> str:
        """The absolute URL of ``path`` on this receiver."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests arrived; return them. Raise TimeoutError if not.

        This blocks the calling thread: from async code (a worker in the same loop) use
        ``await wait_for_async(...)`` instead.
        """
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while len(self._state.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"receiver got {len(self._state.requests)} requests, wanted {n} "
                        f"within {timeout}s"
                    )
                self._state.changed.wait(left)
            return list(self._state.requests)

    async def wait_for_async(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Like ``wait_for`` without blocking the running event loop."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests
            if len(got) >= n:
                return got
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"receiver got {len(got)} requests, wanted {n} within {timeout}s"
                )
            await asyncio.sleep(0.005)

    def clear(self) -> None:
        """Forget recorded requests and flaky counters."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.flaky_counts.clear()

    def stop(self) -> None:
        """Stop the server (cancelling handlers still sleeping) and join its thread."""
        self._stop()


def start_receiver_in_thread(host: str = "127.0.0.1", port: int = 0) -> ReceiverHandle:
    """Start a receiver on ``host:port`` (0: a free port) in a new thread; return its handle."""
    state = _State()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(
            _make_app(state),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.2,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name=f"receiver-{host}:{port}", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in box:
        raise RuntimeError(f"receiver failed to start on {host}:{port}") from box["error"]
    if "port" not in box:
        raise RuntimeError(f"receiver did not start on {host}:{port} within 10s")

    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return ReceiverHandle(host, box["port"], state, stop)


def main() -> None:
    """Run a receiver in the foreground until Ctrl-C (for demos and benchmarks)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    handle = start_receiver_in_thread(args.host, args.port)
    print(f"receiver listening on {handle.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
