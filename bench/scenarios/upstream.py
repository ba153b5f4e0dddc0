"""Upstream cost: Intuned calls per run and notice delay, relay (default poll settings) vs naive.

Two ways, both reported:

- **schedule**: the worker's own functions (``relay.policy.next_poll_interval`` and
  ``workers.polling.poll_after``: ±10 % jitter, capped at the maximum) applied to the real
  DEFAULT settings (``RELAY_POLL_INTERVAL=3s``, ``RELAY_POLL_MAX_INTERVAL=30s``), over 500
  seeds: first poll at registration, then one poll per delay until the first at or after the
  run's end. The naive loop polls at 0, 3, 6, ...
- **live, clock scaled by K** (K = 3 for the 30 s run, 20 for 10 min, 120 for 2 h, one after
  the other, so each lasts 10-60 real seconds): the relay worker runs with every duration
  divided by K (poll interval 3 s/K, maximum 30 s/K, watch timeout 24 h/K) against fake runs
  whose ``pending_seconds`` is the duration/K; next to it, a naive loop with Intuned's own SDK
  (``intuned_client.AsyncIntunedClient``) polls other runs of the same length on a 3 s/K tick.
  Calls are counted by the fake; notice delay = (first terminal answer - run end) x K.
- **push, live, real clock**: start-and-watch with Intuned's sink vs today's poll-only path vs
  the naive SDK loop, 20 s runs (``bench.scenarios.upstream_push``).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time

from intuned_client import AsyncIntunedClient

from bench.common import Bench, Row
from bench.procs import INTUNED_KEY, WORKSPACE
from bench.scenarios.upstream_push import NAIVE_INTERVAL, naive_sdk, run_push
from relay.policy import next_poll_interval
from relay.settings import Settings
from workers.polling import poll_after

DEFAULTS = Settings(redis_url=None, intuned_workspace_id="w", api_keys={})
DURATIONS = {"30 s": 30.0, "10 min": 600.0, "2 h": 7200.0}
# Clock divisors per run length: each run lasts 10-60 real seconds, so the few real
# milliseconds between creating a run and its first poll stay small once multiplied by K.
FULL_SCALE = {"30 s": 3.0, "10 min": 20.0, "2 h": 120.0}
SMOKE_SCALE = {"30 s": 30.0, "10 min": 600.0}


def schedule_cost(duration: float, seed: int) -> tuple[int, float]:
    """(calls, notice delay s) of one run under the relay's policy and default settings."""
    rng = random.Random(seed)
    t, interval, calls = 0.0, 0.0, 1
    base, maximum = DEFAULTS.poll_interval, DEFAULTS.poll_max_interval
    while t < duration:
        interval = next_poll_interval(interval, base, maximum)
        t += poll_after(interval, DEFAULTS, rng=rng)
        calls += 1
    return calls, t - duration


def naive_cost(duration: float) -> tuple[int, float]:
    """(calls, notice delay s) of polling every 3 s from registration on."""
    polls_after_start = math.ceil(duration / NAIVE_INTERVAL)
    return polls_after_start + 1, polls_after_start * NAIVE_INTERVAL - duration


async def live(b: Bench, label: str, d: float, k: float, per: int) -> dict[str, dict]:
    """One duration on a clock scaled by ``k``: calls and notice delay, relay vs SDK loop."""
    await b.flush()
    s = DEFAULTS
    worker = b.fleet.worker(
        RELAY_POLL_INTERVAL=f"{s.poll_interval / k * 1000:.3f}ms",
        RELAY_POLL_MAX_INTERVAL=f"{s.poll_max_interval / k * 1000:.3f}ms",
        RELAY_WATCH_TIMEOUT=f"{s.watch_timeout / k:.3f}s",
    )
    try:
        async with AsyncIntunedClient(
            api_key=INTUNED_KEY, workspace_id=WORKSPACE, base_url=b.fleet.intuned_base
        ) as sdk:
            # Each side starts watching right after its runs were created: the lag, real
            # milliseconds, is multiplied by K on the scaled clock.
            script = {"pendingSeconds": d / k, "outcome": "completed", "result": {"ok": True}}
            tag = label.replace(" ", "")
            naive_ids = [f"up-n-{tag}-{i}" for i in range(per)]
            await b.fake_runs(f"up-n-{tag}-", per, script)
            tasks = [asyncio.create_task(naive_sdk(sdk, r, NAIVE_INTERVAL / k)) for r in naive_ids]
            relay_ids = [f"up-r-{tag}-{i}" for i in range(per)]
            await b.fake_runs(f"up-r-{tag}-", per, script)
            await b.register_many(relay_ids, b.fleet.receiver_root + "/hook")
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=d / k * 1.5 + 30)
        deadline = time.monotonic() + s.poll_max_interval / k * 3 + 10
        while True:
            info = await b.fake_info(relay_ids + naive_ids)
            done = all(info[r]["firstTerminalAt"] is not None for r in relay_ids)
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        b.fleet.stop_child(worker)
        await b.flush()
    out: dict[str, dict] = {}
    for side, ids in (("relay", relay_ids), ("naive", naive_ids)):
        out[side] = {
            "calls": [info[r]["polls"] for r in ids],
            "delays": [
                (info[r]["firstTerminalAt"] - info[r]["createdAt"] - d / k) * k
                for r in ids
                if info[r]["firstTerminalAt"] is not None
            ],
        }
    return out


async def run(b: Bench) -> list[Row]:
    """The schedule numbers for every duration, the scaled live run, then the live push run
    (``bench.scenarios.upstream_push``)."""
    rows: list[Row] = await run_push(b)
    seeds = 50 if b.smoke else 500
    per = 2 if b.smoke else 5
    scales = SMOKE_SCALE if b.smoke else FULL_SCALE
    measured = {}
    for label, k in scales.items():
        measured[label] = await live(b, label, DURATIONS[label], k, per)
        b.log(f"upstream live {label} (clock / {k:g}): {measured[label]}")
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
                f"; live at K={scales[label]:g}: relay calls {rc}, notice delay "
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
        k = scales[label]
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
