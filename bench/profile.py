"""Profile the relay's processes under the bench with py-spy, and summarise where the time goes.

    uv run python -m bench.profile delivery           # bench --only delivery, py-spy on the worker
    uv run python -m bench.profile e2e,registration   # ... on the API (granian workers) too
    uv run python -m bench.profile --summary DIR      # summarise samples recorded before

It runs ``python -m bench --only <scenarios> --out DIR`` with ``BENCH_PYSPY=DIR``, so every relay
process the bench starts is sampled by ``py-spy record --format raw --rate 250 --subprocesses
--nonblocking`` (``bench/procs.py``) until it exits, then prints per file the functions with the
most samples on the stack (inclusive) and at the top of it (self). py-spy is a dev dependency.

A stuck or slow process right now, without the bench: ``uv run py-spy dump --pid PID`` (every
thread's stack once), or ``uv run py-spy record --pid PID --duration 20 -o worker.svg`` (a
flame graph); add ``--subprocesses`` for ``relay up`` or a multi-process ``relay worker``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

TOP = 25


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    """py-spy raw output: ``frame;frame;... count`` per line, outermost frame first."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)`` so lines of one function merge."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file}" + ")" if where else name


def package(frame: str) -> str:
    """Who owns a frame: ``relay``, ``workers``, a library or stdlib package (``asyncio``)."""
    where = frame.partition(" (")[2].rsplit(":", 1)[0]
    if not where:
        return "native (uvloop, hiredis, ...)" if frame.startswith("process ") else frame
    return where.split("/", 1)[0] if "/" in where else "stdlib"


def summarise(path: Path, top: int = TOP) -> str:
    """Inclusive and self sample shares of one process's recording, idle excluded."""
    stacks = read_stacks(path)
    busy = [(s, n) for s, n in stacks if not _idle(s)]
    total = sum(n for _, n in busy)
    if not total:
        return f"{path.name}: no busy samples"
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    for stack, n in busy:
        owners[package(stack[-1])] += n
        frames = [short(f) for f in stack]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    all_samples = sum(n for _, n in stacks)
    lines = [f"== {path.name}: {total} busy samples of {all_samples} ({total / all_samples:.0%})"]
    lines.append("   inclusive %  function")
    lines += [f"   {100 * n / total:10.1f}  {f}" for f, n in inclusive.most_common(top)]
    lines.append("   self %       function")
    lines += [f"   {100 * n / total:10.1f}  {f}" for f, n in own.most_common(top)]
    lines.append("   self % by owner")
    lines += [f"   {100 * n / total:10.1f}  {f}" for f, n in owners.most_common(top)]
    return "\n".join(lines)


def _idle(stack: list[str]) -> bool:
    """A sample of a thread waiting in the event loop's selector (or sleeping), not working."""
    top = stack[-1] if stack else ""
    return any(w in top for w in ("select (selectors", "epoll", "_run_once (base_events", "sleep"))


def main() -> None:
    """Run the bench under py-spy (or only summarise)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="?", default="delivery")
    parser.add_argument("--summary", default="", help="only summarise this directory")
    parser.add_argument("--top", type=int, default=TOP)
    args = parser.parse_args()
    if args.summary:
        out = Path(args.summary)
    else:
        out = Path(tempfile.mkdtemp(prefix="relay-pyspy-"))
        env = {**os.environ, "BENCH_PYSPY": str(out)}
        cmd = [sys.executable, "-m", "bench", "--only", args.scenarios, "--out", str(out)]
        subprocess.run(cmd, env=env, check=True)
    for path in sorted(out.glob("*.txt")):
        print(summarise(path, args.top))
    print(f"samples in {out}")


if __name__ == "__main__":
    main()
