"""Scale: 100,000 watched runs: Redis memory per run, worker RSS at 10k vs 100k, registration time.

Runs are registered directly through ``relay.store.Store.register`` (256 concurrent calls from
the bench process, no arq kick): the HTTP path is measured by the registration scenario, and
100,000 requests through it would take minutes. Memory is Redis ``INFO memory`` ``used_memory``
after minus before, divided by the runs: each run here is one subscription (its hash, the
client's indexes, the idempotency entry) plus one watch (hash, subscriber set, due entry) and,
once polled, the cached pending result. One worker with DEFAULT poll settings (3 s growing to
30 s) polls them against the fake (runs pending forever); its RSS is read from /proc after a
soak at 10k and again at 100k.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Bench, Row
from bench.procs import rss_kib
from bench.scenarios.polling import PENDING_FOREVER


async def used_memory(b: Bench) -> int:
    """Redis ``used_memory`` in bytes."""
    info = await b.redis.info("memory")
    return int(info["used_memory"])


async def register(b: Bench, lo: int, hi: int) -> float:
    """Register runs scale-lo..hi (fake and relay); return the relay-side seconds."""
    await b.fake_runs("scale-", hi - lo, PENDING_FOREVER, start=lo)
    ids = [f"scale-{i}" for i in range(lo, hi)]
    t0 = time.perf_counter()
    await b.register_many(ids, b.fleet.receiver_root + "/hook")
    return time.perf_counter() - t0


async def soak(b: Bench, seconds: float, pid: int) -> list[int]:
    """RSS samples (KiB) once a second while the worker polls."""
    samples = []
    for _ in range(int(seconds)):
        await asyncio.sleep(1.0)
        samples.append(rss_kib(pid))
    return samples


async def run(b: Bench) -> list[Row]:
    """Register 10% of the runs, soak, register the rest, soak; memory and RSS on the way."""
    total = 2_000 if b.smoke else 100_000
    first = total // 10
    soak_s = 2.0 if b.smoke else 15.0
    await b.flush()
    await asyncio.sleep(0.2)
    mem0 = await used_memory(b)
    t_first = await register(b, 0, first)
    mem_first = await used_memory(b)
    worker = b.fleet.worker()  # default poll settings
    try:
        polls0 = await b.fake_requests()
        rss_small = await soak(b, soak_s, worker.pid)
        polls_small = await b.fake_requests() - polls0
        t_rest = await register(b, first, total)
        mem_registered = await used_memory(b)
        polls0 = await b.fake_requests()
        rss_large = await soak(b, soak_s, worker.pid)
        polls_large = await b.fake_requests() - polls0
        mem_after = await used_memory(b)
    finally:
        b.fleet.stop_child(worker)
    await b.flush()
    per_run_registered = (mem_registered - mem0) / total
    per_run_after = (mem_after - mem0) / total
    per_run_first = (mem_first - mem0) / first
    reg_rate = total / (t_first + t_rest)
    rss_s, rss_l = max(rss_small[-3:]) / 1024, max(rss_large[-3:]) / 1024
    b.log(
        f"scale: {per_run_registered:.0f} B/run registered, {per_run_after:.0f} B/run after polls; "
        f"RSS {rss_s:.1f} MiB @ {first} vs {rss_l:.1f} MiB @ {total}; {reg_rate:,.0f} reg/s"
    )
    return [
        Row(
            "scale",
            f"Redis used_memory per watched run, {total:,} runs, after polling",
            "B/run",
            [per_run_after],
            None,
            "<= 1024 B/run",
            per_run_after <= 1024,
            higher_is_better=False,
            note=f"right after registration: {per_run_registered:.0f} B/run "
            f"({per_run_first:.0f} B/run at {first:,}); after {soak_s:.0f} s of polling "
            f"({polls_large:,} polls; a polled run also holds its cached pending result): "
            f"{per_run_after:.0f} B/run",
        ),
        Row(
            "scale",
            f"worker RSS at {total:,} runs vs {first:,} runs",
            "MiB",
            [rss_l],
            [rss_s],
            "ratio <= 1.2 (flat)",
            None,
            ratio_max=1.2,
            higher_is_better=False,
            note=f"baseline column = the same worker at {first:,} runs; polls during the soaks: "
            f"{polls_small:,} and {polls_large:,} in {soak_s:.0f} s",
        ),
        Row(
            "scale",
            f"time to register {total:,} runs (Store.register direct, 256 concurrent)",
            "s",
            [t_first + t_rest],
            None,
            "— (context)",
            None,
            higher_is_better=False,
            note=f"{reg_rate:,.0f} registrations/s through the store; the HTTP path is the "
            "registration scenario",
        ),
    ]
