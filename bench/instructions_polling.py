"""Instructions per poll: one ``relay worker`` (as deployed) and its Redis under callgrind.

    uv run python -m bench.instructions_polling               # 2,000 pending runs, 20 s

The polling row's set-up (``bench/scenarios/polling.py``): runs the fake answers ``pending``
forever, a 1 ms poll interval, so the worker is saturated. The worker and Redis run under
callgrind with instrumentation switched on for a window (``--seconds``) once the first pass is
done; the polls counted by the fake in that window divide the instructions. See
``bench/instructions_delivery.py`` for what the count means under callgrind.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvloop

from bench import callgrind as cg
from bench.common import Bench
from bench.scenarios.polling import PENDING_FOREVER


async def measure(runs: int, seconds: float, work: Path) -> str:
    """One line: worker and Redis instructions per poll."""
    fleet = cg.callgrind_fleet(work)
    b = Bench(fleet, smoke=False)
    try:
        fleet.start()
        await b.open()
        run_ids = [f"poll-{i}" for i in range(runs)]
        await b.fake_runs("poll-", runs, PENDING_FOREVER)
        await b.register_many(run_ids, fleet.receiver_root + "/hook")
        worker = cg.worker_under_callgrind(
            fleet, work, RELAY_POLL_INTERVAL="1ms", RELAY_POLL_MAX_INTERVAL="1ms"
        )
        while await b.fake_requests() < runs:  # the first pass over every run
            await asyncio.sleep(0.5)
        assert fleet.redis.process is not None
        pids = (worker.pid, fleet.redis.process.pid)
        before = await b.fake_requests()
        cg.instrument("on", *pids)
        await asyncio.sleep(seconds)
        cg.instrument("off", *pids)
        polls = await b.fake_requests() - before
        cg.dump(*pids)
        await b.close()
    finally:
        fleet.stop()
    worker_ir, redis_ir = cg.totals(work, "worker"), cg.totals(work, "redis")
    return (
        f"worker {worker_ir // polls:,} Ir/poll, Redis {redis_ir // polls:,}, together "
        f"{(worker_ir + redis_ir) // polls:,} ({polls} polls in {seconds:.0f} s under callgrind)"
    )


def main() -> None:
    """Parse arguments, measure, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="pending runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    args = parser.parse_args()
    work = cg.work_dir(parser)
    print(uvloop.run(measure(args.runs, args.seconds, work)), flush=True)


if __name__ == "__main__":
    main()
