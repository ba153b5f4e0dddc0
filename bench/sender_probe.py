"""Probe: deliveries/s of WebhookSender vs raw aiohttp vs httpx over httpx_aiohttp, same run.

The receiver (``tests.support.receiver``) runs in its own process so it does not share our GIL.
Each client POSTs a signed ~1 KiB body to ``/ok`` with ``--concurrency`` requests in flight;
rounds alternate between the clients so machine noise hits them alike.

    uv run python -m bench.sender_probe --requests 4000 --concurrency 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import httpx_aiohttp

from relay.model import DeliveryOutcome
from relay.webhooks.allowlist import CallbackPolicy
from relay.webhooks.sender import WebhookSender
from relay.webhooks.signing import new_secret, webhook_headers

OPEN = CallbackPolicy(allow_private=True)

BODY = b'{"type":"run.completed","data":{"runId":"r","result":"' + b"x" * 1000 + b'"}}'
HEADERS = webhook_headers("msg_probe", int(time.time()), BODY, [new_secret()])

Send = Callable[[], Awaitable[None]]


async def measure(send: Send, requests: int, concurrency: int) -> float:
    """Requests per second for ``requests`` calls of ``send`` with ``concurrency`` in flight."""
    todo = iter(range(requests))

    async def lane() -> None:
        for _ in todo:
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def probe(url: str, requests: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    """Run every client ``rounds`` times, interleaved; return the per-round rates."""
    rates: dict[str, list[float]] = {"WebhookSender": [], "raw aiohttp": [], "httpx+aiohttp": []}
    sender = WebhookSender(timeout=15, policy=OPEN, max_connections=concurrency)
    raw = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    hx = httpx.AsyncClient(
        transport=httpx_aiohttp.AiohttpTransport(
            client=aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        )
    )
    await sender.start()
    try:

        async def via_sender() -> None:
            result = await sender.send(url, BODY, HEADERS)
            assert result.outcome is DeliveryOutcome.DELIVERED, result

        async def via_raw() -> None:
            async with raw.post(url, data=BODY, headers=HEADERS, allow_redirects=False) as r:
                await r.content.read(1025)
                assert r.status == 200

        async def via_httpx() -> None:
            async with hx.stream("POST", url, content=BODY, headers=HEADERS) as r:
                async for _ in r.aiter_raw():
                    break
                assert r.status_code == 200

        clients = {"WebhookSender": via_sender, "raw aiohttp": via_raw, "httpx+aiohttp": via_httpx}
        for send in clients.values():  # warm up connections
            await measure(send, concurrency * 4, concurrency)
        for _ in range(rounds):
            for name, send in clients.items():
                rates[name].append(await measure(send, requests, concurrency))
    finally:
        await sender.aclose()
        await raw.close()
        await hx.aclose()
    return rates


def main() -> None:
    """Start the receiver process, probe, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=9391)
    args = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.support.receiver", "--port", str(args.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        receiver.stdout.readline()  # "receiver listening on ..."
        url = f"http://127.0.0.1:{args.port}/ok"
        rates = asyncio.run(probe(url, args.requests, args.concurrency, args.rounds))
    finally:
        receiver.terminate()
        receiver.wait(10)
    print(f"{args.requests} POSTs x {args.rounds} rounds, {args.concurrency} in flight -> /ok")
    for name, values in rates.items():
        shown = " / ".join(f"{v:,.0f}" for v in values)
        print(f"  {name:<14} median {statistics.median(values):>7,.0f}/s   ({shown})")


if __name__ == "__main__":
    main()
