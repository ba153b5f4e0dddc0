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
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.common import Bench
from bench.instructions import total_ir
from bench.instructions_delivery import _callgrind, _control, _instrument
from bench.procs import Child, Fleet
from bench.scenarios.polling import PENDING_FOREVER
from relay.embedded_redis import EmbeddedRedis, find_server_binary


async def measure(runs: int, seconds: float, work: Path) -> str:
    """One line: worker and Redis instructions per poll."""
    wrapper = work / "redis.sh"
    server = " ".join([*_callgrind(work, "redis"), find_server_binary()])
    wrapper.write_text(f'#!/bin/sh\nexec {server} "$@"\n')
    wrapper.chmod(0o755)
    fleet = Fleet()
    fleet.redis = EmbeddedRedis(fleet.dir / "redis", persistent=False, binary=str(wrapper))
    b = Bench(fleet, smoke=False)
    try:
        fleet.start()
        await b.open()
        run_ids = [f"poll-{i}" for i in range(runs)]
        await b.fake_runs("poll-", runs, PENDING_FOREVER)
        await b.register_many(run_ids, fleet.receiver_root + "/hook")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONHASHSEED": "0",
            **fleet.relay_env(RELAY_POLL_INTERVAL="1ms", RELAY_POLL_MAX_INTERVAL="1ms"),
        }
        args = [*_callgrind(work, "worker"), sys.executable, "-m", "relay", "worker"]
        worker = Child("worker", args, env, work / "worker.log")
        fleet.children.append(worker)
        worker.wait_log(b"worker_started", timeout=600)
        while await b.fake_requests() < runs:  # the first pass over every run
            await asyncio.sleep(0.5)
        assert fleet.redis.process is not None
        pids = (worker.pid, fleet.redis.process.pid)
        before = await b.fake_requests()
        _instrument("on", *pids)
        await asyncio.sleep(seconds)
        _instrument("off", *pids)
        polls = await b.fake_requests() - before
        for pid in pids:
            _control("-d", str(pid))
        await b.close()
    finally:
        fleet.stop()
    worker_ir = sum(total_ir(p) for p in work.glob("worker.*.out*"))
    redis_ir = sum(total_ir(p) for p in work.glob("redis.*.out*"))
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
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        parser.error("needs valgrind and callgrind_control on PATH (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="relay-instructions-"))
    print(uvloop.run(measure(args.runs, args.seconds, work)), flush=True)


if __name__ == "__main__":
    main()
