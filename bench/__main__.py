"""Benchmarks of the relay against baselines measured in the same run, on loopback only.

    uv run python -m bench            # full run: writes bench/results.json and bench/RESULTS.md
    uv run python -m bench --smoke    # tiny sizes, < 60 s, writes into a temp dir (CI)
    uv run python -m bench --only delivery,polling

Starts a dedicated Redis, the fake Intuned, a receiver, and the relay's processes as deployed;
stops every one of them by PID at the end, also on errors. A missed target is reported in the
table, never a failure: the exit code is non-zero only when the harness itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import uvloop

from bench import report
from bench.common import Bench, Row
from bench.procs import Fleet
from bench.scenarios import (
    console,
    delivery,
    e2e,
    fairness,
    latency,
    polling,
    processes,
    registration,
    scale,
    upstream,
)

# Registration runs last: its two servers boot (seconds of imports) while the others measure.
SCENARIOS: dict[str, Callable[[Bench], Awaitable[list[Row]]]] = {
    "delivery": delivery.run,
    "processes": processes.run,
    "e2e": e2e.run,
    "fairness": fairness.run,
    "polling": polling.run,
    "scale": scale.run,
    "latency": latency.run,
    "upstream": upstream.run,
    "console": console.run,
    "registration": registration.run,
}


async def main_async(names: list[str], smoke: bool, out: Path) -> int:
    """Run the scenarios; write the report; 0 unless the harness broke."""
    # SIGTERM unwinds like Ctrl-C, so every child is still stopped by the finally below.
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    started = time.monotonic()
    fleet = Fleet()
    rows: list[Row] = []
    meta: dict[str, object] = {}
    failed: list[str] = []
    bench = Bench(fleet, smoke)
    try:
        fleet.start()
        await bench.open()
        if "registration" in names:
            registration.prepare(bench)
        for name in names:
            t0 = time.monotonic()
            bench.log(f"scenario {name} ...")
            try:
                rows += await SCENARIOS[name](bench)
            except Exception as exc:
                bench.log(f"scenario {name} FAILED: {exc!r}")
                failed.append(name)
                import traceback

                traceback.print_exc()
            meta[f"{name} wall time"] = f"{time.monotonic() - t0:.1f} s"
        meta.update({f"note {i + 1}": n for i, n in enumerate(bench.notes)})
    finally:
        try:
            await bench.close()
        finally:
            fleet.stop()
    wall = time.monotonic() - started
    report.write(rows, meta, out, wall_seconds=wall, smoke=smoke)
    print((out / "RESULTS.md").read_text())
    print(f"bench: {len(rows)} rows in {wall:.0f} s; written to {out}")
    if failed:
        print(f"bench: scenarios failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, < 60 s (CI)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--out", default="", help="where to write results (default: bench/)")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite RESULTS.md from results.json (after editing bench/NOTES.md)",
    )
    args = parser.parse_args()
    if args.render:
        out = Path(args.out) if args.out else Path(__file__).resolve().parent
        report.render(msgspec.json.decode((out / "results.json").read_bytes()), out)
        return
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="relay-bench-smoke-"))
    else:
        out = Path(__file__).resolve().parent
    sys.exit(uvloop.run(main_async(names, args.smoke, out)))


if __name__ == "__main__":
    main()
