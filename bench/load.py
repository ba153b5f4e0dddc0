"""Load generators (aiohttp, in the bench process) and the small statistics the report needs.

Each generator keeps a fixed number of requests in flight ("lanes"), each lane on its own
keep-alive connection, and stops at a deadline or after a count. Used identically for the
relay and for its baseline, so its own cost cancels out of the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repetitions."""
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@dataclass
class LoadResult:
    """What one load window produced."""

    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        """99th percentile latency."""
        return percentile(self.latencies_ms, 0.99)


def session(connections: int) -> aiohttp.ClientSession:
    """A client session with exactly ``connections`` keep-alive connections."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=30),
        skip_auto_headers=("Accept-Encoding",),
    )


async def run_lanes(
    http: aiohttp.ClientSession,
    lanes: int,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
    *,
    seconds: float | None = None,
    count: int | None = None,
) -> LoadResult:
    """Run ``request(http, i)`` (a coroutine returning a status) on ``lanes`` lanes."""
    result = LoadResult()
    counter = iter(range(count if count is not None else 1 << 62))
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    async def lane() -> None:
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                status = await request(http, i)
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.statuses[status] += 1
            result.requests += 1

    await asyncio.gather(*(lane() for _ in range(lanes)))
    result.seconds = time.perf_counter() - started
    return result
