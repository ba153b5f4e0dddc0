"""Instructions per delivery: one ``relay worker`` (as deployed) and its Redis under callgrind.

    uv run python -m bench.instructions_delivery              # 2,000 deliveries, this checkout
    uv run python -m bench.instructions_delivery --count 4000
    uv run python -m bench.instructions_delivery --baseline   # and the raw loop's per POST

The delivery row's set-up (``bench/scenarios/delivery.py``): N subscriptions of runs recorded
terminal with a ~2 KB result, all due at once, one worker at concurrency 64 with the per-host
cap at 64, the bench's receiver verifying every signature. The worker and Redis run under
callgrind with instrumentation off; it is switched on (``callgrind_control -i on``) when the
deliveries are made due and off when the receiver has them all, so start-up and the idle pump
before it are not counted. Under callgrind the worker is ~50x slower than the receiver and
Redis, so it runs CPU-bound, with full claim batches: the count is the cost of a saturated
worker, which is the regime of the delivery row on this box. It does not depend on what else
runs; wall-clock rates do (see ``bench/NOTES.md``). Needs ``valgrind`` and ``callgrind_control``
on PATH. Every child is stopped by PID at the end.

``--baseline`` also counts the delivery row's raw loop (``bench.raw_loop``: the same signed POSTs
at the same concurrency, to the same receiver) under callgrind, per POST: the worker's count over
it is the row's ratio in instructions, free of the box's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import uvloop

from bench import callgrind as cg
from bench.common import Bench
from bench.procs import Child
from bench.scenarios.delivery import CONCURRENCY, parked_due, release_due
from relay.model import EventType
from relay.webhooks.signing import webhook_id


async def measure(count: int, work: Path) -> str:
    """One line: worker and Redis instructions per delivery."""
    fleet = cg.callgrind_fleet(work)
    b = Bench(fleet, smoke=False)
    try:
        fleet.start()
        await b.open()
        callback = fleet.receiver_root + "/hook"
        docs, due = await parked_due(b, [f"ir-{i}" for i in range(count)], callback)
        worker = cg.worker_under_callgrind(
            fleet, work, RELAY_MAX_IN_FLIGHT_PER_HOST=str(CONCURRENCY)
        )
        await asyncio.sleep(2)  # the pumps' first idle pass
        assert fleet.redis.process is not None
        pids = (worker.pid, fleet.redis.process.pid)
        cg.instrument("on", *pids)
        t0 = time.monotonic()
        await release_due(b, due)
        while (await b.receiver_stats())["unique"] < count:
            await asyncio.sleep(0.2)
        cg.instrument("off", *pids)
        cg.dump(*pids)
        elapsed = time.monotonic() - t0
        ids = [webhook_id(d.id, EventType.COMPLETED) for d in docs]
        got = await b.receipts(ids)
        await b.close()
    finally:
        fleet.stop()  # the worker and Redis write their callgrind files as they exit
    worker_ir, redis_ir = cg.totals(work, "worker"), cg.totals(work, "redis")
    return (
        f"worker {worker_ir // count:,} Ir/delivery, Redis {redis_ir // count:,}, "
        f"together {(worker_ir + redis_ir) // count:,} ({len(got)}/{count} received, "
        f"{elapsed:.0f} s under callgrind)"
    )


async def measure_raw(count: int, work: Path) -> str:
    """One line: the raw loop's instructions per POST."""
    fleet = cg.callgrind_fleet(work)
    b = Bench(fleet, smoke=False)
    gate = work / "gate"
    gate.mkdir()
    try:
        fleet.start()
        await b.open()
        args = ["--callback", fleet.receiver_root + "/hook", "--count", str(count)]
        loop = Child(
            "raw",
            [
                *cg.callgrind(work, "raw"),
                sys.executable,
                "-m",
                "bench.raw_loop",
                *args,
                "--gate",
                str(gate),
            ],
            {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0"},
            work / "raw.log",
        )
        fleet.children.append(loop)
        loop.wait_log(b"raw_loop_ready", timeout=600)
        cg.instrument("on", loop.pid)
        (gate / "go").touch()
        await asyncio.to_thread(loop.wait_log, b"raw_loop_done", 600)
        cg.instrument("off", loop.pid)
        (gate / "stop").touch()
        got = (await b.receiver_stats())["unique"]
        await b.close()
    finally:
        fleet.stop()
    raw_ir = cg.totals(work, "raw")
    return f"raw loop {raw_ir // count:,} Ir/POST ({got}/{count} received)"


def main() -> None:
    """Parse arguments, measure, print one line (two with ``--baseline``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="deliveries")
    parser.add_argument("--baseline", action="store_true", help="also count the raw loop")
    args = parser.parse_args()
    work = cg.work_dir(parser)
    print(uvloop.run(measure(args.count, work)), flush=True)
    if args.baseline:
        raw_work = work / "raw"
        raw_work.mkdir()
        print(uvloop.run(measure_raw(args.count, raw_work)), flush=True)


if __name__ == "__main__":
    main()
