"""Registrations through the API's ASGI app in-process (no server), to profile the relay's part.

    uv run python -m bench.profile_api --requests 25600
    uv run py-spy record -r 500 --format raw -o api.raw -- python -m bench.profile_api
    uv run python -m bench.profile_api --summary api.raw

Under the registration row the API's samples are mostly granian, Litestar and redis-py, and the
server's native frames cannot be named. Here the app (``relay.api.app.create_app``, as deployed,
JSON logs to stderr) answers ``POST /v1/subscriptions`` called straight through ASGI by 64
concurrent callers, on a Redis of its own, so every sample inside a request is the app's. It
prints the process's CPU per request; ``--summary`` reads a py-spy raw recording and prints the
inclusive share of named steps among the samples inside a request. Bounded: it makes exactly
``--requests`` registrations (plus a warm-up) and stops its Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench.procs import relay_env
from bench.scenarios.registration import AUTH, body
from relay.embedded_redis import EmbeddedRedis

CALLERS = 64
HEADERS = [(k.lower().encode(), v.encode()) for k, v in AUTH.items()] + [(b"host", b"bench")]
# What the summary names: a label and a substring of a py-spy frame.
STEPS = {
    "request metrics middleware and below": "RequestMetrics.middleware.<locals>.measured",
    "route handler with its signature parsing": "HTTPRoute._call_handler_function",
    "handler (SubscriptionController.create)": "SubscriptionController.create",
    "registration service": "register (relay/services/registration.py",
    "store REGISTER call": "SubscriptionStore.register",
    "redis-py packing the arguments": "pack_command",
    "redis-py reading the reply": "read_response",
    "log line (structlog)": "make_method.<locals>.meth",
    "auth and strict body decode": "require_client_and_body",
    "response encoding": "HTTPRouteHandler.to_response",
    "shaping the answer": "subscription_out",
    "RFC 3339 timestamps": "iso (relay/services/views.py",
    "random bytes (secret, id)": "randbytes",
    "run digest": "run_digest",
}
Message = MutableMapping[str, Any]


async def _post(app: Callable[..., Awaitable[None]], run_id: str) -> None:
    data = body(run_id)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/subscriptions",
        "raw_path": b"/v1/subscriptions",
        "query_string": b"",
        "root_path": "",
        "headers": [*HEADERS, (b"content-length", str(len(data)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [201]:
        raise RuntimeError(f"registration answered {statuses}")


async def _measure(redis_url: str, requests: int) -> float:
    os.environ.update(relay_env(redis_url, "http://127.0.0.1:9"))
    from relay.api.app import create_app
    from relay.observability import configure_logging
    from relay.settings import Settings

    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_format)
    app = create_app(settings)
    startup: asyncio.Queue[Message] = asyncio.Queue()
    replies: asyncio.Queue[Message] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "state": {}}, startup.get, replies.put))
    await replies.get()

    async def caller(tag: str, count: int) -> None:
        for i in range(count):
            await _post(app, f"{tag}-{i}")

    await asyncio.gather(*(caller(f"warm-{k}", 20) for k in range(CALLERS)))
    started = time.process_time()
    await asyncio.gather(*(caller(f"run-{k}", requests // CALLERS) for k in range(CALLERS)))
    cpu = time.process_time() - started
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan
    return cpu / (requests // CALLERS * CALLERS)


def summary(path: Path) -> str:
    """Inclusive shares of ``STEPS`` among the samples inside a request."""
    inside = 0
    counts = dict.fromkeys(STEPS, 0)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if "_post (" not in stack or not count.isdigit():
            continue
        inside += int(count)
        for label, frame in STEPS.items():
            if frame in stack:
                counts[label] += int(count)
    rows = [f"{inside} samples inside a request"]
    rows += [f"{100 * n / max(inside, 1):6.1f} %  {label}" for label, n in counts.items()]
    return "\n".join(rows)


def main() -> None:
    """Measure (or only summarise a recording)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12_800)
    parser.add_argument("--summary", type=Path, default=None)
    args = parser.parse_args()
    if args.summary is not None:
        print(summary(args.summary))
        return
    import uvloop

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-profile-api-")), persistent=False) as r:
        per_request = uvloop.run(_measure(r.url, args.requests))
    print(f"API CPU per registration, in-process: {per_request * 1e6:.0f} us", file=sys.stderr)


if __name__ == "__main__":
    main()
