"""Callgrind for the instruction-count benches (``bench.instructions*``): the tools they share.

Instruction counts (``Ir``) do not depend on what else runs on the box, so changes smaller than
its wall-clock noise are chosen on them (``bench/NOTES.md``). Processes start with
instrumentation off (``--instr-atstart=no``) and are switched on and off around the measured
part with ``callgrind_control``. Needs ``valgrind`` and ``callgrind_control`` on PATH; must
never be imported by the relay itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import Child, Fleet
from relay.embedded_redis import EmbeddedRedis, find_server_binary


def callgrind(work: Path, name: str) -> list[str]:
    """The valgrind command line for a process called ``name`` (one output file per pid)."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={work}/{name}.%p.out",
    ]


def work_dir(parser: argparse.ArgumentParser) -> Path:
    """A scratch directory for the output files; a usage error without valgrind."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        parser.error("needs valgrind and callgrind_control on PATH (apt-get install valgrind)")
    return Path(tempfile.mkdtemp(prefix="relay-instructions-"))


def redis_under_callgrind(work: Path, directory: Path) -> EmbeddedRedis:
    """An (unstarted) Redis in ``directory`` that runs under callgrind (output ``redis.*``)."""
    wrapper = work / "redis.sh"
    server = " ".join([*callgrind(work, "redis"), find_server_binary()])
    wrapper.write_text(f'#!/bin/sh\nexec {server} "$@"\n')
    wrapper.chmod(0o755)
    return EmbeddedRedis(directory, persistent=False, binary=str(wrapper))


def callgrind_fleet(work: Path) -> Fleet:
    """The bench's fleet (fake Intuned, receiver) with its Redis under callgrind."""
    fleet = Fleet()
    fleet.redis = redis_under_callgrind(work, fleet.dir / "redis")
    return fleet


def worker_under_callgrind(fleet: Fleet, work: Path, **overrides: str) -> Child:
    """Start one ``relay worker`` of this checkout under callgrind; back once it has started."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONHASHSEED": "0",
        **fleet.relay_env(**overrides),
    }
    args = [*callgrind(work, "worker"), sys.executable, "-m", "relay", "worker"]
    worker = Child("worker", args, env, work / "worker.log")
    fleet.children.append(worker)
    worker.wait_log(b"worker_started", timeout=600)
    return worker


def instrument(state: str, *pids: int) -> None:
    """Switch instrumentation ``on`` or ``off`` in these processes."""
    for pid in pids:
        subprocess.run(
            ["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True
        )


def dump(*pids: int) -> None:
    """Write the counts now (a process killed on a slow exit writes nothing)."""
    for pid in pids:
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)


def total_ir(path: Path) -> int:
    """The ``totals:`` line of a callgrind output file (0 when absent)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def totals(work: Path, name: str) -> int:
    """All instructions counted in the output files of the processes called ``name``."""
    return sum(total_ir(p) for p in work.glob(f"{name}.*.out*"))
