"""Polling: polls/s of ONE ``relay worker`` over 10,000 watched runs that never finish.

The fake (rate limit off) answers ``pending`` forever; the worker runs with a 1 ms poll interval
and 1 ms maximum, so every run is due again as soon as it was polled and the worker is saturated.
Polls are counted by the fake (its answered result requests) over a window.

Baseline, interleaved: the worker is paused (SIGSTOP, by PID) and a raw aiohttp GET loop in the
bench process fetches the same 10,000 result URLs round-robin with the same api key at the
worker's concurrency; then the worker is resumed (SIGCONT). A second baseline at 4x that
concurrency probes the fake's own capacity: if it is not higher, the fake is the ceiling.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

import aiohttp

from bench.common import Bench, Row
from bench.load import run_lanes, session
from bench.procs import INTUNED_KEY, PROJECT, WORKSPACE, CpuMeter
from bench.scenarios.delivery import CONCURRENCY

PENDING_FOREVER = {"pendingPolls": 1_000_000_000}


async def relay_window(b: Bench, seconds: float, pids: dict[str, int]) -> tuple[float, dict]:
    """Polls/s the fake answered during ``seconds`` of the running worker."""
    meter = CpuMeter(pids)
    before, t0 = await b.fake_requests(), time.monotonic()
    await asyncio.sleep(seconds)
    after, t1 = await b.fake_requests(), time.monotonic()
    return (after - before) / (t1 - t0), meter.read()


async def baseline_window(
    b: Bench, urls: list[str], seconds: float, lanes: int, pids: dict[str, int]
) -> tuple[float, dict]:
    """Polls/s of a raw aiohttp GET loop at ``lanes`` in flight."""
    headers = {"x-api-key": INTUNED_KEY, "accept": "application/json"}

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        async with http.get(urls[i % len(urls)], headers=headers) as r:
            await r.read()
            return r.status

    meter = CpuMeter(pids)
    async with session(lanes) as http:
        res = await run_lanes(http, lanes, one, seconds=seconds)
    if res.errors or set(res.statuses) != {200}:
        b.notes.append(f"polling baseline: statuses {dict(res.statuses)}, errors {res.errors}")
    return res.rate, meter.read()


async def measure(
    b: Bench, name: str, worker_pid: int, urls: list[str], seconds: float, pids: dict[str, int]
) -> tuple[float, dict]:
    """One window: the running worker ("relay"), or raw GETs with the worker paused."""
    if name == "relay":
        os.kill(worker_pid, signal.SIGCONT)
        await asyncio.sleep(0.5)  # let it refill its in-flight slots
        return await relay_window(b, seconds, pids)
    os.kill(worker_pid, signal.SIGSTOP)
    await asyncio.sleep(0.2)
    lanes = CONCURRENCY if name == "baseline" else CONCURRENCY * 4
    return await baseline_window(b, urls, seconds, lanes, pids)


async def run(b: Bench) -> list[Row]:
    """Register the runs, start one worker, alternate windows."""
    n = 500 if b.smoke else 10_000
    seconds = 1.5 if b.smoke else 5.0
    reps = 1 if b.smoke else 5
    await b.flush()
    run_ids = [f"poll-{i}" for i in range(n)]
    await b.fake_runs("poll-", n, PENDING_FOREVER)
    await b.register_many(run_ids, b.fleet.receiver_root + "/hook")
    base = b.fleet.intuned_base
    urls = [f"{base}/{WORKSPACE}/projects/{PROJECT}/run/{r}/result" for r in run_ids]
    worker = b.fleet.worker(RELAY_POLL_INTERVAL="1ms", RELAY_POLL_MAX_INTERVAL="1ms")
    redis_pid = b.fleet.redis.process.pid  # type: ignore[union-attr]
    pids = {"worker": worker.pid, "fake": b.fleet.fake.pid, "redis": redis_pid}
    rates: dict[str, list[float]] = {"relay": [], "baseline": [], "capacity": []}
    cpus: dict[str, list[dict]] = {"relay": [], "baseline": [], "capacity": []}
    try:
        await asyncio.sleep(1.0 if b.smoke else 3.0)  # warm-up: the first pass over every run
        os.kill(worker.pid, signal.SIGSTOP)
        await baseline_window(b, urls, 1.0, CONCURRENCY, pids)  # warm-up of the baseline
        os.kill(worker.pid, signal.SIGCONT)
        # Strictly alternating relay, baseline, relay, ... : the worker is never paused for
        # longer than one window, far below its Intuned timeout, so pausing costs it nothing.
        for _ in range(reps):
            for name in ("relay", "baseline"):
                rate, cpu = await measure(b, name, worker.pid, urls, seconds, pids)
                rates[name].append(rate)
                cpus[name].append(cpu)
                b.log(f"polling {name}: {rate:,.0f}/s cpu {cpu}")
        for _ in range(max(1, reps - 1)):  # the fake's own ceiling, worker paused
            rate, cpu = await measure(b, "capacity", worker.pid, urls, seconds, pids)
            rates["capacity"].append(rate)
            cpus["capacity"].append(cpu)
            b.log(f"polling capacity probe: {rate:,.0f}/s cpu {cpu}")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        b.fleet.stop_child(worker)
        await b.flush()
    med = {k: statistics.median(v) for k, v in rates.items()}
    fake_cpu = {k: round(statistics.median(c["fake"] for c in v), 1) for k, v in cpus.items()}
    worker_cpu = round(statistics.median(c["worker"] for c in cpus["relay"]), 1)
    peak_fake = max(c["fake"] for v in cpus.values() for c in v)
    verdict = (
        "the fake, one aiohttp process, was near a full core: it is the ceiling for both sides"
        if peak_fake >= 85
        else "the fake never used a full core, so the ceiling is the shared CPU, not the fake"
    )
    note = (
        f"{n} runs. Fake CPU (% of one core, median): during relay windows {fake_cpu['relay']}, "
        f"baseline {fake_cpu['baseline']}, capacity probe ({CONCURRENCY * 4} in flight) "
        f"{fake_cpu['capacity']} at {med['capacity']:,.0f} polls/s (peak {peak_fake}); "
        f"worker CPU {worker_cpu}%: {verdict}."
    )
    return [
        Row(
            "polling",
            f"polls/s, one worker, {n:,} pending runs",
            "polls/s",
            rates["relay"],
            rates["baseline"],
            "ratio >= 0.8",
            None,
            note=note,
            ratio_min=0.8,
        ),
        Row(
            "polling",
            f"fake Intuned capacity ({CONCURRENCY * 4} raw GETs in flight)",
            "polls/s",
            rates["capacity"],
            None,
            "— (context)",
            None,
        ),
    ]
