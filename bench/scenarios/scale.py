"""Scale: Redis memory per watched run (through the API), worker RSS at 10k vs 100k runs.

Memory per run: ``API_RUNS`` runs registered through ``POST /v1/subscriptions`` of a real API
process (no metadata, 64 connections), then one worker polls each once; Redis ``INFO memory``
``used_memory`` after (both processes stopped, so their connections are not counted) minus
before (an empty Redis but the bench client's secret), divided by the runs: everything the
relay and arq keep for a run (subscription, watch, the run's stored pending result, indexes,
due entries, and any arq job or result key). For RSS, runs are
registered directly through ``SubscriptionStore.register`` (256 concurrent calls; 100,000
requests through HTTP would take minutes); one worker with DEFAULT poll settings (3 s growing to
30 s) polls them against the fake (runs pending forever); its RSS is read from /proc after a
soak at 10k and again at 100k.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.common import Bench, Row
from bench.load import session
from bench.procs import CLIENT_KEY, rss_kib, wait_http
from bench.scenarios.polling import PENDING_FOREVER
from relay.embedded_redis import free_port

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}


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


async def register_api(url: str, run_ids: list[str], callback: str) -> int:
    """POST a subscription for each run at 64 connections; returns how many were not 201."""
    queue = list(reversed(run_ids))
    bad = 0

    async def lane(http: aiohttp.ClientSession) -> None:
        nonlocal bad
        while queue:
            body = b'{"projectName":"bench-project","runId":"%s","callbackUrl":"%s"}' % (
                queue.pop().encode(),
                callback.encode(),
            )
            async with http.post(url, data=body, headers=AUTH) as resp:
                await resp.read()
                bad += resp.status != 201

    async with session(64) as http:
        await asyncio.gather(*(lane(http) for _ in range(64)))
    return bad


async def memory_through_api(b: Bench) -> tuple[int, float, int]:
    """(runs, Redis bytes per run after each run's first poll, non-201 answers)."""
    runs = 1_000 if b.smoke else 20_000
    port = free_port()
    env = b.fleet.relay_env(RELAY_HOST="127.0.0.1", RELAY_PORT=str(port))
    api = b.fleet.spawn("api-scale", ["-m", "relay", "api"], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        await b.flush()
        await b.fake_runs("mem-", runs, PENDING_FOREVER)
        await asyncio.sleep(0.2)
        before = await used_memory(b)
        ids = [f"mem-{i}" for i in range(runs)]
        url = f"http://127.0.0.1:{port}/v1/subscriptions"
        bad = await register_api(url, ids, b.fleet.receiver_root + "/hook")
        polls0 = await b.fake_requests()
        worker = b.fleet.worker()
        try:
            deadline = time.monotonic() + 120
            while await b.fake_requests() - polls0 < runs and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        finally:
            b.fleet.stop_child(worker)
        with_api = await used_memory(b)
    finally:
        b.fleet.stop_child(api)
    # Measured once the API is gone: its pooled connections (a few KB of Redis client state
    # each) are a fixed cost of the process, not something kept per run.
    await asyncio.sleep(0.2)
    after = await used_memory(b)
    b.notes.append(
        f"scale: {(with_api - before) / runs:.0f} B/run through the API while the API process "
        f"and its Redis connections were still up, {(after - before) / runs:.0f} B/run after"
    )
    await b.flush()
    return runs, (after - before) / runs, bad


async def run(b: Bench) -> list[Row]:
    """Memory per run through the API; then register 10% of the store runs, soak, register the
    rest, soak: RSS on the way."""
    api_runs, per_run_api, api_bad = await memory_through_api(b)
    b.log(f"scale: {per_run_api:.0f} B/run through the API ({api_runs:,} runs, {api_bad} non-201)")
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
            f"Redis used_memory per watched run, {api_runs:,} runs registered through the API, "
            "after their first polls (relay + arq keys)",
            "B/run",
            [per_run_api],
            None,
            "<= 800 B/run",
            per_run_api <= 800,
            higher_is_better=False,
            note=f"through the store directly ({total:,} runs): {per_run_registered:.0f} B/run "
            f"right after registration ({per_run_first:.0f} B/run at {first:,}), "
            f"{per_run_after:.0f} B/run after {soak_s:.0f} s of polling ({polls_large:,} polls)",
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
            f"time to register {total:,} runs (SubscriptionStore.register direct, 256 concurrent)",
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
