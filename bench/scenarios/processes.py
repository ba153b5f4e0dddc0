"""Scaling: deliveries/s of ``relay worker`` with RELAY_WORKER_PROCESSES=2 against 1, same run.

Each repetition is the delivery scenario's relay side (N subscriptions due at once, a 2 KB
completed result, the rate counted at the receiver from its first to its last verified receipt)
run once with one worker process and once with two under one supervisor, the order alternating
so drift hits both alike. The ratio (2 processes / 1) is what a second core buys; on this 2-core
machine the receiver, Redis and the bench share those cores, so the note gives every process's
CPU to show how free the second core was.
"""

from __future__ import annotations

from bench.common import Bench, Row, ratio_row
from bench.scenarios.delivery import relay_rep


async def run(b: Bench) -> list[Row]:
    """Warm-up, then interleaved 1-process / 2-process repetitions."""
    n = 300 if b.smoke else 6000
    reps = 1 if b.smoke else 4
    callback = b.fleet.receiver_root + "/hook"
    if not b.smoke:
        await relay_rep(b, 500, "scale-warm", callback, processes=2)
    rates: dict[str, list[float]] = {"relay": [], "baseline": []}  # 2 processes, 1 process
    cpus: list[str] = []
    for rep in range(reps):
        for processes in (1, 2) if rep % 2 == 0 else (2, 1):
            rate, cpu = await relay_rep(b, n, f"p{processes}-{rep}", callback, processes)
            rates["relay" if processes == 2 else "baseline"].append(rate)
            cpus.append(f"{processes}p: {cpu}")
            b.log(f"processes {processes}: {rate:,.0f} deliveries/s cpu {cpu}")
    await b.flush()
    note = (
        f"{n} deliveries per repetition; baseline column = 1 process; CPU % of one core per "
        "window (worker = the supervisor and all its processes): " + "; ".join(cpus)
    )
    metric = "deliveries/s, 2 worker processes vs 1 (RELAY_WORKER_PROCESSES)"
    return [ratio_row("processes", metric, "deliveries/s", rates, 1.6, note)]
