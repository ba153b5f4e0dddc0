"""Instructions per registration: ``relay api`` (as deployed) and its Redis under callgrind.

    uv run python -m bench.instructions                    # this checkout
    uv run python -m bench.instructions . ../v01           # this checkout, then another tree

On this shared 2-core box the wall-clock rate and the CPU seconds per request of one 5 s window
move by 20 % or more between windows, so they cannot tell apart changes of a few percent. An
instruction count (callgrind's ``Ir``) does not depend on what else runs. For each tree the API
is started twice under callgrind, each time given the same warm-up, then ``--small`` or
``--large`` registrations (64 connections, a new run each, an IP-literal callback, as the bench's
registration row); the difference of the two totals over the difference of the counts is the
API's instructions per request, without its start-up. Redis runs under callgrind too, counted
only while the measured registrations run. Instructions are not time (hashing in C retires more
of them per nanosecond than the interpreter), so compare like with like. Needs ``valgrind`` and
``callgrind_control`` on PATH; another tree runs with its own ``.venv`` when it has one. Every
child is stopped by its process group at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import uvloop

from bench.callgrind import instrument, redis_under_callgrind, totals, work_dir
from bench.load import run_lanes, session
from bench.procs import relay_env, wait_http
from bench.scenarios.registration import register
from relay.embedded_redis import free_port

WARM_UP = 320
_tags = itertools.count()


async def registrations(url: str, count: int) -> None:
    """``count`` registrations of new runs at 64 connections; every one must answer 201."""
    tag = next(_tags)

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        return await register(http, url, f"ir-{tag}-{i}")

    async with session(64) as http:
        res = await run_lanes(http, 64, one, count=count)
    if res.statuses.get(201) != count:
        raise RuntimeError(f"registrations answered {dict(res.statuses)}")


def _python(tree: Path) -> str:
    own = tree / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


async def one_run(tree: Path, count: int, work: Path) -> tuple[int, int]:
    """Total instructions of the API (start-up included) and of Redis (measured part only)."""
    work.mkdir(parents=True)
    redis = redis_under_callgrind(work, work / "redis")
    redis.start(timeout=60)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "INTUNED_"))},
        **relay_env(
            redis.url,
            "http://127.0.0.1:9",
            RELAY_HOST="127.0.0.1",
            RELAY_PORT=str(port),
            PYTHONHASHSEED="0",
        ),
    }
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/api.%p.out"]
    with (work / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [*cmd, _python(tree), "-m", "relay", "api"],
            cwd=tree,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 600)
        url = f"http://127.0.0.1:{port}/v1/subscriptions"
        await registrations(url, WARM_UP)
        assert redis.process is not None
        instrument("on", redis.process.pid)
        await registrations(url, count)
        instrument("off", redis.process.pid)
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(api.wait, 120)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
            await asyncio.to_thread(api.wait)
        redis.stop(timeout=60)
    return totals(work, "api"), totals(work, "redis")


async def measure(tree: Path, small: int, large: int, work: Path) -> str:
    """One tree's line: API and Redis instructions per registration."""
    (api_s, _), (api_l, redis_l) = await asyncio.gather(
        one_run(tree, small, work / "small"), one_run(tree, large, work / "large")
    )
    api, rds = (api_l - api_s) // (large - small), redis_l // large
    return f"{tree}: API {api:,} Ir/registration, Redis {rds:,}, together {api + rds:,}"


def main() -> None:
    """Parse arguments, measure each tree in turn, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", default=["."], help="checkouts (default: this one)")
    parser.add_argument("--small", type=int, default=200, help="registrations, first run")
    parser.add_argument("--large", type=int, default=1200, help="registrations, second run")
    args = parser.parse_args()
    work = work_dir(parser)
    for i, tree in enumerate(args.trees):
        line = uvloop.run(measure(Path(tree).resolve(), args.small, args.large, work / str(i)))
        print(line, flush=True)


if __name__ == "__main__":
    main()
