"""``relay check``: one health probe that is right for whichever relay command a container runs.

The image's HEALTHCHECK cannot know whether the container was started as ``relay up``, ``relay
api`` or ``relay worker``. This module finds out from the process table: the relay process is
the one the container started (PID 1, or the first relay command below it, since ``tini`` is PID
1 in the image), and its role decides the probe:

- ``api``: the local ``/healthz`` answers 200 (``relay api --check``);
- ``worker``: this host's worker refreshed its health key in Redis (``relay worker --check``);
- ``up``: both, for the API and worker it supervises (the worker's ``REDIS_URL`` is read from that
  child's environment when the embedded Redis gave it one).

It must never change anything, never print a secret (the Redis URL is not shown), and always
answer within a few seconds. Linux only (``/proc``); elsewhere use the ``--check`` flags.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path

ROLES = ("up", "api", "worker")
PROC = Path("/proc")
_MAX_DEPTH = 3  # tini -> relay up -> relay api / relay worker


def read_argv(pid: int) -> list[str]:
    """A process's command line as a list (empty when it is gone or unreadable)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def role_of(argv: list[str]) -> str | None:
    """``up``/``api``/``worker`` for a relay command line (``relay api``, ``python -m relay
    worker``, ``.../bin/relay up``), None for anything else, including the probes themselves."""
    if "--check" in argv:
        return None
    for i, arg in enumerate(argv[:-1]):
        if os.path.basename(arg) == "relay":
            return argv[i + 1] if argv[i + 1] in ROLES else None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from each process's ``stat`` (works on every Linux kernel)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return sorted(found)


def is_wrapper(argv: list[str]) -> bool:
    """True for a process that runs the relay as its child (``tini -- relay up``), False for
    the relay itself (``relay up``, ``python -m relay up``, ``python .../bin/relay up``)."""
    i = next((n for n, arg in enumerate(argv) if os.path.basename(arg) == "relay"), 0)
    python = os.path.basename(argv[0]).startswith("python") if argv else False
    return not (i == 0 or (python and (i == 1 or (i == 2 and argv[1] == "-m"))))


def innermost(pid: int, role: str) -> int:
    """Past wrappers whose command line names the relay (``tini -- relay up``) to the relay."""
    for _ in range(_MAX_DEPTH):
        if not is_wrapper(read_argv(pid)):
            break
        same = [child for child in children(pid) if role_of(read_argv(child)) == role]
        if not same:
            break
        pid = same[0]
    return pid


def find_relay(root: int, depth: int = 0) -> tuple[int, str] | None:
    """The first relay process at or below ``root`` (breadth first) and its role."""
    role = role_of(read_argv(root))
    if role is not None:
        return innermost(root, role), role
    if depth >= _MAX_DEPTH:
        return None
    for child in children(root):
        role = role_of(read_argv(child))
        if role is not None:
            return innermost(child, role), role
    for child in children(root):
        found = find_relay(child, depth + 1)
        if found is not None:
            return found
    return None


def environ_of(pid: int) -> dict[str, str]:
    """Another process's environment (same user only; empty when unreadable)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def check(
    environ: Mapping[str, str],
    *,
    root: int,
    echo: Callable[[str], None],
    api_health: Callable[[Mapping[str, str]], int],
) -> int:
    """0 when the relay process under ``root`` is healthy for its role, 1 otherwise."""
    from workers.health import worker_health

    if not PROC.is_dir():
        echo("relay check: needs /proc (Linux); use `relay api --check` or `relay worker --check`")
        return 1
    found = find_relay(root)
    if found is None:
        echo(f"relay check: no relay up, api or worker process at or below pid {root}")
        return 1
    pid, role = found
    worker_pid = pid
    if role == "up":
        kids = {role_of(read_argv(child)): child for child in children(pid)}
        missing = [name for name in ("api", "worker") if name not in kids]
        if missing:
            echo(f"relay check: relay up (pid {pid}) runs no {' and no '.join(missing)}")
            return 1
        worker_pid = kids["worker"]
    if role in ("up", "api") and api_health(environ) != 0:
        return 1
    if role in ("up", "worker"):
        url = environ.get("REDIS_URL") or environ_of(worker_pid).get("REDIS_URL")
        if not url:
            echo("relay check: REDIS_URL is not set, so the worker's health cannot be read")
            return 1
        if asyncio.run(worker_health(url)) != 0:
            return 1
    echo(f"relay check: relay {role} (pid {pid}) is healthy")
    return 0
