"""Latency: relay-added time from the fake's first terminal answer to the receiver's receipt.

Light load: one worker (poll interval 50 ms), a few dozen runs that finish at staggered times
(the fake's ``pending_seconds``), each with one subscription. For every run, the fake records the
wall time it answered the poll that first showed ``completed`` (``RunStats.first_terminal_wall``)
and the receiver the wall time the verified webhook arrived; the difference is what the relay
adds: reading the answer, recording it and fanning out in Redis, waking the delivery pump,
claiming, building and signing the body, and the POST.

Baseline: loopback RTT, one HTTP POST of a signed event body to the same receiver at a time.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from bench.common import Bench, Row
from bench.load import percentile, session
from bench.procs import SECRET
from relay.model import EventType
from relay.webhooks.signing import webhook_headers, webhook_id


async def relay_rep(b: Bench, rep: int, runs: int) -> list[float]:
    """Per-run relay latencies (ms) of one repetition."""
    await b.receiver_reset()
    ids = [f"lat-{rep}-{i}" for i in range(runs)]
    for i, run_id in enumerate(ids):
        script = {"pendingSeconds": 0.3 + 0.15 * i, "outcome": "completed", "result": {"n": i}}
        await b.fake_runs(run_id, 1, script)  # run id = prefix + "0"
    docs = await b.register_many([r + "0" for r in ids], b.fleet.receiver_root + "/hook")
    msg = {webhook_id(d.id, EventType.COMPLETED): d.run_id for d in docs}
    deadline = time.monotonic() + 10 + 0.15 * runs
    got: dict[str, float] = {}
    while len(got) < runs and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        got = await b.receipts(list(msg))
    info = await b.fake_info(list(msg.values()))
    out = []
    for mid, wall in got.items():
        first = info[msg[mid]]["firstTerminalWall"]
        if first is not None:
            out.append((wall - first) * 1000)
    if len(out) < runs:
        b.notes.append(f"latency rep {rep}: only {len(out)}/{runs} runs measured")
    return out


async def rtt(b: Bench, n: int) -> list[float]:
    """Loopback HTTP round trips (ms), one at a time, signed body to the receiver."""
    body = b'{"type":"run.completed","data":{"runId":"rtt"}}'
    url = b.fleet.receiver_root + "/hook"
    out = []
    async with session(1) as http:
        for i in range(n):
            headers = webhook_headers(f"msg_rtt_{i}", int(time.time()), body, [SECRET])
            t0 = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as r:
                await r.read()
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(b: Bench) -> list[Row]:
    """Interleaved repetitions of relay runs and RTT probes."""
    runs = 6 if b.smoke else 40
    reps = 1 if b.smoke else 3
    await b.flush()
    worker = b.fleet.worker(RELAY_POLL_INTERVAL="50ms", RELAY_POLL_MAX_INTERVAL="50ms")
    p50: dict[str, list[float]] = {"relay": [], "baseline": []}
    p99: dict[str, list[float]] = {"relay": [], "baseline": []}
    all_relay: list[float] = []
    try:
        await rtt(b, 20)  # warm-up
        for rep in range(reps):
            lat = await relay_rep(b, rep, runs)
            base = await rtt(b, 200)
            all_relay += lat
            for name, values in (("relay", lat), ("baseline", base)):
                p50[name].append(percentile(values, 0.5))
                p99[name].append(percentile(values, 0.99))
            b.log(
                f"latency rep {rep}: relay p50 {p50['relay'][-1]:.1f} p99 {p99['relay'][-1]:.1f}"
                f" ms; rtt p50 {p50['baseline'][-1]:.2f} p99 {p99['baseline'][-1]:.2f} ms"
            )
    except aiohttp.ClientError:
        raise
    finally:
        b.fleet.stop_child(worker)
        await b.flush()
    mp50, mp99 = statistics.median(p50["relay"]), statistics.median(p99["relay"])
    note = (
        f"{runs} runs per repetition; over all {len(all_relay)} runs: min "
        f"{min(all_relay, default=0):.1f} ms, max {max(all_relay, default=0):.1f} ms"
    )
    return [
        Row(
            "latency",
            "relay-added latency p50 (first terminal answer -> receipt)",
            "ms",
            p50["relay"],
            p50["baseline"],
            "p50 <= 10 ms",
            mp50 <= 10,
            higher_is_better=False,
            note=note,
        ),
        Row(
            "latency",
            "relay-added latency p99",
            "ms",
            p99["relay"],
            p99["baseline"],
            "p99 <= 50 ms",
            mp99 <= 50,
            higher_is_better=False,
        ),
    ]
