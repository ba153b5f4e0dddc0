"""Probe: what the delivery row's POST costs through aiohttp against a lean HTTP/1.1 loop.

The delivery row compares the worker with a raw aiohttp loop (``bench.scenarios.delivery.
raw_loop``). This probe asks how much of that loop's own CPU is aiohttp's client: it runs the
same loop, interleaved, beside a lean one that sends the same signed body over 64 kept-alive
asyncio connections, writing each request's bytes itself and reading the status line and a
``Content-Length`` body (no chunked bodies, no TLS, no redirects, no pool: only what this
receiver needs). CPU is this process's (``time.process_time``) per POST; the receiver
(``bench.receiver``, signatures verified) runs in its own process.

    uv run python -m bench.lean_post_probe --requests 4000 --rounds 4

Not a client for the relay: it shows what the architecture question in ``bench/NOTES.md``
("Session 27") is worth, nothing more. Never imported by the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import cast

import uvloop

from bench.procs import SECRET
from bench.scenarios.delivery import CONCURRENCY, baseline_body, raw_loop
from relay.embedded_redis import free_port
from relay.webhooks.signing import webhook_headers

TIMEOUT = 30.0


class Connection(asyncio.Protocol):
    """One kept-alive connection; ``exchange`` writes a request and waits for its status."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if self.waiter is None or end < 0:
            return
        head = bytes(self.buffer[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def exchange(self, request: bytes) -> int:
        """Send one request; its status code."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.waiter, TIMEOUT)


async def lean_loop(port: int, body: bytes, ids: list[str]) -> None:
    """The raw loop's POSTs (signed per request, 64 in flight) without aiohttp."""
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(CONCURRENCY)
    ]
    todo = iter(range(len(ids)))
    start = f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"

    async def lane(connection: Connection) -> None:
        for i in todo:
            headers = webhook_headers(ids[i], int(time.time()), body, [SECRET])
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            status = await connection.exchange((start + lines + "\r\n").encode() + body)
            if status != 200:
                raise RuntimeError(f"receiver answered {status}")

    try:
        await asyncio.gather(*(lane(c) for c in connections))
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()


async def probe(port: int, requests: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(CPU us per POST, POSTs/s) per round and loop; the first round is a warm-up."""
    body = baseline_body()
    callback = f"http://127.0.0.1:{port}/hook"
    results: dict[str, list[tuple[float, float]]] = {"raw aiohttp": [], "lean": []}
    for round_no in range(rounds + 1):
        for name, values in results.items():
            ids = [f"msg_{name[0]}{round_no}_{i}" for i in range(requests)]
            cpu, wall = time.process_time(), time.perf_counter()
            if name == "lean":
                await lean_loop(port, body, ids)
            else:
                await raw_loop(callback, ids)
            cpu = (time.process_time() - cpu) * 1e6 / requests
            rate = requests / (time.perf_counter() - wall)
            if round_no:
                values.append((cpu, rate))
    return results


def main() -> None:
    """Start the receiver, probe, print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", "--port", str(port), "--secret", SECRET]
    )
    try:
        time.sleep(2)  # the receiver binds its port
        results = uvloop.run(probe(port, args.requests, args.rounds))
    finally:
        receiver.terminate()
        receiver.wait(10)
    print(f"{args.requests} signed POSTs x {args.rounds} rounds, {CONCURRENCY} in flight")
    for name, values in results.items():
        cpus = " / ".join(f"{c:.0f}" for c, _ in values)
        print(
            f"  {name:<12} CPU {statistics.median(c for c, _ in values):6.1f} us per POST "
            f"({cpus}), {statistics.median(r for _, r in values):,.0f}/s"
        )


if __name__ == "__main__":
    main()
