"""The demo's webhook receiver: a tiny aiohttp server in its own thread that verifies signatures.

``verify_webhook`` checks a delivery exactly as a Standard Webhooks receiver does (HMAC over
``{id}.{timestamp}.{body}``, any one of the space-separated signatures, a timestamp tolerance),
using the relay's own signing functions, so the demo needs no dev-only library. Paths starting
with ``/hooks/flaky`` answer 503 to the first attempt of each ``webhook-id`` to show a retry.
Only ``relay demo`` uses this module; it binds to loopback.
"""

from __future__ import annotations

import asyncio
import hmac
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from relay.webhooks.signing import signature_header

TOLERANCE_SECONDS = 300


class VerificationError(ValueError):
    """A webhook whose headers or signature do not verify."""


def verify_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None
) -> Any:
    """Verify a Standard Webhooks delivery with ``secret``; return the decoded JSON body."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise VerificationError("webhook-timestamp is not an integer") from None
    if abs((now if now is not None else time.time()) - timestamp) > TOLERANCE_SECONDS:
        raise VerificationError("webhook-timestamp is too far from now")
    expected = signature_header(msg_id, timestamp, body, [secret])
    if not any(hmac.compare_digest(expected, sig) for sig in signatures.split()):
        raise VerificationError("no signature matches the secret")
    return msgspec.json.decode(body)


@dataclass(frozen=True)
class Delivery:
    """One request the receiver answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # time.monotonic() on arrival
    wall: float = 0.0  # time.time() on arrival


class DemoReceiver:
    """An HTTP receiver on 127.0.0.1 whose deliveries land in a thread-safe queue."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self._seen_flaky: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this receiver."""
        return f"http://{self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status = 200
        if request.path.startswith("/hooks/flaky"):
            key = headers.get("webhook-id", "")
            if key not in self._seen_flaky:
                self._seen_flaky.add(key)
                status = 503
        self.deliveries.put(
            Delivery(request.path, headers, body, status, time.monotonic(), time.time())
        )
        return web.Response(status=status, text="ok" if status == 200 else "try again later")

    def start(self, timeout: float = 10.0) -> None:
        """Serve in a background thread; ``port`` becomes the bound port."""
        ready = threading.Event()
        errors: list[BaseException] = []

        async def setup() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port).start()
            self._runner = runner
            self.port = int(runner.addresses[0][1])

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(setup())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="demo-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            raise RuntimeError("the demo receiver did not start") from (
                errors[0] if errors else None
            )

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
