"""Upstream cost: Intuned calls per run and notice delay, relay (default poll settings) vs naive.

Two ways, both reported:

- **schedule**: ``relay.policy``'s own functions (``next_poll_interval``, ``poll_delay`` with its
  ±10 % jitter) applied to the real DEFAULT settings (``RELAY_POLL_INTERVAL=3s``,
  ``RELAY_POLL_MAX_INTERVAL=30s``), averaged over 500 seeds: first poll at registration, then one
  poll per delay until the first at or after the run's end. The naive loop polls at 0, 3, 6, ...
- **live, clock scaled by K**: the relay worker runs with every duration divided by K (poll
  interval 3 s/K, maximum 30 s/K, watch timeout 24 h/K) against fake runs whose
  ``pending_seconds`` is the duration/K; next to it, a naive loop with Intuned's own SDK
  (``intuned_client.AsyncIntunedClient``) polls other runs of the same durations every 3 s/K.
  Calls are counted by the fake; notice delay = (first terminal answer - run end) x K.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time

from intuned_client import AsyncIntunedClient

from bench.common import Bench, Row
from bench.procs import INTUNED_KEY, PROJECT, WORKSPACE
from relay.policy import next_poll_interval, poll_delay
from relay.settings import Settings

DEFAULTS = Settings(redis_url=None, intuned_workspace_id="w", api_keys={})
DURATIONS = {"30 s": 30.0, "10 min": 600.0, "2 h": 7200.0}
NAIVE_INTERVAL = 3.0


def schedule_cost(duration: float, seed: int) -> tuple[int, float]:
    """(calls, notice delay s) of one run under the relay's policy and default settings."""
    rng = random.Random(seed)
    t, interval, calls = 0.0, 0.0, 1
    base, maximum = DEFAULTS.poll_interval, DEFAULTS.poll_max_interval
    while t < duration:
        interval = next_poll_interval(interval, base, maximum)
        t += poll_delay(interval, maximum=maximum, rng=rng)
        calls += 1
    return calls, t - duration


def naive_cost(duration: float) -> tuple[int, float]:
    """(calls, notice delay s) of polling every 3 s from registration on."""
    polls_after_start = math.ceil(duration / NAIVE_INTERVAL)
    return polls_after_start + 1, polls_after_start * NAIVE_INTERVAL - duration


async def naive_sdk(sdk: AsyncIntunedClient, run_id: str, interval: float) -> None:
    """Poll with the SDK every ``interval`` until the run is terminal."""
    while True:
        res = await sdk.projects.runs.result(project_name=PROJECT, run_id=run_id)
        if res.status in ("completed", "failed", "canceled"):
            return
        await asyncio.sleep(interval)


async def live(b: Bench, k: float, per: int, durations: dict[str, float]) -> dict[str, dict]:
    """Scaled live run: calls and notice delay per duration, relay vs SDK loop."""
    await b.flush()
    s = DEFAULTS
    worker = b.fleet.worker(
        RELAY_POLL_INTERVAL=f"{s.poll_interval / k * 1000:.3f}ms",
        RELAY_POLL_MAX_INTERVAL=f"{s.poll_max_interval / k * 1000:.3f}ms",
        RELAY_WATCH_TIMEOUT=f"{s.watch_timeout / k:.3f}s",
    )
    out: dict[str, dict] = {}
    try:
        sdk = AsyncIntunedClient(
            api_key=INTUNED_KEY, workspace_id=WORKSPACE, base_url=b.fleet.intuned_base
        )
        relay_ids: dict[str, list[str]] = {}
        naive_ids: dict[str, list[str]] = {}
        tasks = []
        for label, d in durations.items():
            # Each side starts watching right after its runs were created: the lag, real
            # milliseconds, is multiplied by K on the scaled clock.
            script = {"pendingSeconds": d / k, "outcome": "completed", "result": {"ok": True}}
            tag = label.replace(" ", "")
            naive_ids[label] = [f"up-n-{tag}-{i}" for i in range(per)]
            await b.fake_runs(f"up-n-{tag}-", per, script)
            tasks += [
                asyncio.create_task(naive_sdk(sdk, r, NAIVE_INTERVAL / k)) for r in naive_ids[label]
            ]
            relay_ids[label] = [f"up-r-{tag}-{i}" for i in range(per)]
            await b.fake_runs(f"up-r-{tag}-", per, script)
            await b.register_many(relay_ids[label], b.fleet.receiver_root + "/hook")
        longest = max(durations.values()) / k
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=longest * 1.5 + 30)
        deadline = time.monotonic() + 60
        for label, d in durations.items():
            while True:
                info = await b.fake_info(relay_ids[label] + naive_ids[label])
                done = all(info[r]["firstTerminalAt"] is not None for r in relay_ids[label])
                if done or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            row = {}
            for side, ids in (("relay", relay_ids[label]), ("naive", naive_ids[label])):
                calls = [info[r]["polls"] for r in ids]
                delays = [
                    (info[r]["firstTerminalAt"] - info[r]["createdAt"] - d / k) * k
                    for r in ids
                    if info[r]["firstTerminalAt"] is not None
                ]
                row[side] = {"calls": calls, "delays": delays}
            out[label] = row
        await sdk.aclose()
    finally:
        b.fleet.stop_child(worker)
        await b.flush()
    return out


async def run(b: Bench) -> list[Row]:
    """The schedule numbers for every duration, then the scaled live run."""
    rows: list[Row] = []
    seeds = 50 if b.smoke else 500
    k = 600.0 if b.smoke else 60.0
    per = 2 if b.smoke else 5
    live_durations = {"30 s": 30.0, "10 min": 600.0} if b.smoke else DURATIONS
    measured = await live(b, k, per, live_durations)
    for label, d in DURATIONS.items():
        sched = [schedule_cost(d, seed) for seed in range(seeds)]
        calls = [float(c) for c, _ in sched]
        delays = [x for _, x in sched]
        n_calls, n_delay = naive_cost(d)
        ratio = statistics.median(calls) / n_calls
        target = "calls <= 0.15 x naive" if label == "10 min" else "— (context)"
        met = ratio <= 0.15 if label == "10 min" else None
        note = (
            f"schedule: notice delay median {statistics.median(delays):.1f} s, max "
            f"{max(delays):.1f} s (naive {n_delay:.1f} s)"
        )
        if label in measured:
            m = measured[label]
            rc, nc = m["relay"]["calls"], m["naive"]["calls"]
            rd = m["relay"]["delays"]
            note += (
                f"; live at K={k:g}: relay calls {rc}, notice delay "
                f"{', '.join(f'{x:.1f}' for x in rd)} s; SDK loop calls {nc}"
            )
        rows.append(
            Row(
                "upstream",
                f"Intuned calls for a {label} run (default settings)",
                "calls",
                calls,
                [float(n_calls)],
                target,
                met,
                higher_is_better=False,
                note=note,
            )
        )
        rows.append(
            Row(
                "upstream",
                f"notice delay for a {label} run (schedule, max over seeds)",
                "s",
                [max(delays)],
                [n_delay],
                f"<= {DEFAULTS.poll_max_interval:g} s",
                max(delays) <= DEFAULTS.poll_max_interval,
                higher_is_better=False,
            )
        )
    for label, m in measured.items():
        rc, nc = m["relay"]["calls"], m["naive"]["calls"]
        rd = m["relay"]["delays"]
        live_ratio = statistics.median(rc) / max(statistics.median(nc), 1)
        rows.append(
            Row(
                "upstream",
                f"live Intuned calls, {label} run, clock / {k:g}",
                "calls",
                [float(x) for x in rc],
                [float(x) for x in nc],
                "calls <= 0.15 x naive" if label == "10 min" else "— (context)",
                live_ratio <= 0.15 if label == "10 min" else None,
                higher_is_better=False,
            )
        )
        rows.append(
            Row(
                "upstream",
                f"live notice delay, {label} run, clock / {k:g}",
                "s",
                rd or [float("nan")],
                m["naive"]["delays"] or None,
                f"<= {DEFAULTS.poll_max_interval:g} s",
                bool(rd) and max(rd) <= DEFAULTS.poll_max_interval,
                higher_is_better=False,
            )
        )
    return rows
