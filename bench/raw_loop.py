"""The delivery row's raw loop as a process of its own, for counting its instructions.

    python -m bench.raw_loop --callback URL --count N --tag T --gate DIR

Started under callgrind by ``bench.instructions_delivery --baseline``: it logs
``raw_loop_ready``, waits for ``DIR/go`` (instrumentation is switched on meanwhile), POSTs one
signed event per id exactly as the delivery row's baseline does (``bench.scenarios.delivery.
raw_loop``), logs ``raw_loop_done`` and waits for ``DIR/stop`` before exiting, so the
interpreter's start and teardown are not counted. Never imported by the relay.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvloop

from bench.scenarios.delivery import raw_loop

POLL = 0.05


async def _until(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(POLL)


async def run(callback: str, count: int, tag: str, gate: Path) -> None:
    """Wait for the go file, run the loop, say so, wait for the stop file."""
    print("raw_loop_ready", flush=True)
    await _until(gate / "go")
    await raw_loop(callback, [f"msg_{tag}_{i}" for i in range(count)])
    print("raw_loop_done", flush=True)
    await _until(gate / "stop")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callback", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tag", default="raw")
    parser.add_argument("--gate", type=Path, required=True)
    args = parser.parse_args()
    uvloop.run(run(args.callback, args.count, args.tag, args.gate))


if __name__ == "__main__":
    main()
