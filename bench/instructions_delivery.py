"""Instructions per delivery: one ``relay worker`` (as deployed) and its Redis under callgrind.

    uv run python -m bench.instructions_delivery              # 2,000 deliveries, this checkout
    uv run python -m bench.instructions_delivery --count 4000

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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.common import Bench
from bench.instructions import total_ir
from bench.procs import Child, Fleet
from bench.scenarios.delivery import CONCURRENCY, make_due
from relay.embedded_redis import EmbeddedRedis, find_server_binary
from relay.model import EventType
from relay.store import keys
from relay.webhooks.signing import webhook_id


def _callgrind(work: Path, name: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={work}/{name}.%p.out",
    ]


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _instrument(state: str, *pids: int) -> None:
    for pid in pids:
        _control("-i", state, str(pid))


async def measure(count: int, work: Path) -> str:
    """One line: worker and Redis instructions per delivery."""
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
        callback = fleet.receiver_root + "/hook"
        docs = await b.register_many([f"ir-{i}" for i in range(count)], callback)
        await b.redis.delete(keys.DUE_POLL)
        await make_due(b, docs)
        due = await b.redis.zrange(keys.DUE_DELIVERY, 0, -1)
        await b.redis.zadd(keys.DUE_DELIVERY, dict.fromkeys(due, 2**50))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONHASHSEED": "0",
            **fleet.relay_env(RELAY_MAX_IN_FLIGHT_PER_HOST=str(CONCURRENCY)),
        }
        args = [*_callgrind(work, "worker"), sys.executable, "-m", "relay", "worker"]
        worker = Child("worker", args, env, work / "worker.log")
        fleet.children.append(worker)
        worker.wait_log(b"worker_started", timeout=600)
        await asyncio.sleep(2)  # the pumps' first idle pass
        assert fleet.redis.process is not None
        pids = (worker.pid, fleet.redis.process.pid)
        _instrument("on", *pids)
        t0 = time.monotonic()
        await b.redis.zadd(keys.DUE_DELIVERY, dict.fromkeys(due, 0))
        await b.redis.publish(keys.WAKE_DELIVERY, b"1")
        while (await b.receiver_stats())["unique"] < count:
            await asyncio.sleep(0.2)
        _instrument("off", *pids)
        for pid in pids:  # a dump now: a worker killed on a slow exit writes nothing
            _control("-d", str(pid))
        elapsed = time.monotonic() - t0
        ids = [webhook_id(d.id, EventType.COMPLETED) for d in docs]
        got = await b.receipts(ids)
        await b.close()
    finally:
        fleet.stop()  # the worker and Redis write their callgrind files as they exit
    worker_ir = sum(total_ir(p) for p in work.glob("worker.*.out*"))
    redis_ir = sum(total_ir(p) for p in work.glob("redis.*.out*"))
    return (
        f"worker {worker_ir // count:,} Ir/delivery, Redis {redis_ir // count:,}, "
        f"together {(worker_ir + redis_ir) // count:,} ({len(got)}/{count} received, "
        f"{elapsed:.0f} s under callgrind)"
    )


def main() -> None:
    """Parse arguments, measure, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="deliveries")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        parser.error("needs valgrind and callgrind_control on PATH (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="relay-instructions-"))
    print(uvloop.run(measure(args.count, work)), flush=True)


if __name__ == "__main__":
    main()
