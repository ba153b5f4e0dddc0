"""The process supervisor of ``relay up`` (API + workers) and of a multi-process ``relay worker``.

The children are the very commands a container runs (``relay api``, ``relay worker``), so one
machine and a cluster exercise the same code; RELAY_WORKER_PROCESSES=N runs N worker children,
each told to be a single process and given its own metrics port (RELAY_WORKER_METRICS_PORT + i).
The supervisor forwards SIGTERM/SIGINT to them, waits up to RELAY_SHUTDOWN_GRACE (plus a margin)
for a graceful exit, and stops everything with a non-zero code when a child exits on its own.
It must never import the API or the worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

# Set in each child's environment: the child stops itself if this process disappears.
SUPERVISOR_PID_ENV = "_RELAY_SUPERVISOR_PID"
WORKER_PROCESSES_ENV = "RELAY_WORKER_PROCESSES"
METRICS_PORT_ENV = "RELAY_WORKER_METRICS_PORT"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_MARGIN = 5.0  # seconds past the grace before a child that ignores SIGTERM is killed
POLL_EVERY = 0.1

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Command:
    """What one child runs: ``python -m relay <args>``, with ``env`` over the supervisor's."""

    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def relay_commands(*, api: bool, workers: int, metrics_port: int) -> dict[str, Command]:
    """The children of ``relay up`` (``api=True``) or of a multi-process ``relay worker``.

    Each worker child runs as one process (it must never supervise in turn); with more than one,
    they are named ``worker-1``... and worker i serves /metrics on ``metrics_port + i - 1``.
    """
    commands = {"api": Command(("api",))} if api else {}
    for i in range(workers):
        env = {WORKER_PROCESSES_ENV: "1"}
        if metrics_port:
            env[METRICS_PORT_ENV] = str(metrics_port + i)
        commands["worker" if workers == 1 else f"worker-{i + 1}"] = Command(("worker",), env)
    return commands


CHILD_COMMANDS = relay_commands(api=True, workers=1, metrics_port=0)


@dataclass
class Child:
    """One supervised process."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid


def local_url(host: str, port: int, path: str) -> str:
    """An URL on this machine for a server bound to ``host`` (wildcards become loopback)."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers 2xx within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own URL
            return 200 <= int(resp.status) < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


class Supervisor:
    """Starts the children, watches them, and stops them together."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        grace: float,
        echo: Echo,
        output: IO[bytes] | None = None,
        commands: Mapping[str, Command] = CHILD_COMMANDS,
    ) -> None:
        self.env = {**env, SUPERVISOR_PID_ENV: str(os.getpid())}
        self.grace = grace
        self.echo = echo
        self.output = output
        self.commands = dict(commands)
        self.children: list[Child] = []
        self.stop_requested = threading.Event()

    def start(self) -> None:
        """Start every child (``python -m relay <command>``) with the supervisor's environment."""
        for name, command in self.commands.items():
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                [sys.executable, "-m", "relay", *command.args],
                env={**self.env, **command.env},
                stdin=subprocess.DEVNULL,
                stdout=self.output,
                stderr=subprocess.STDOUT if self.output is not None else None,
            )
            self.children.append(Child(name, process))

    def request_stop(self) -> None:
        """Ask ``wait`` to return (safe from a signal handler or another thread)."""
        self.stop_requested.set()

    def dead_child(self) -> Child | None:
        """The first child that has exited, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` holds; False if a child died, a stop came or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_requested.is_set() or self.dead_child() is not None:
                return False
            if ready():
                return True
            self.stop_requested.wait(POLL_EVERY)
        return False

    def wait(self) -> int:
        """Block until a stop is requested (0) or a child exits on its own (its code, or 1)."""
        while not self.stop_requested.wait(POLL_EVERY):
            child = self.dead_child()
            if child is not None:
                code = child.process.returncode
                self.echo(f"relay: the {child.name} process exited with code {code}; stopping")
                return code if code and code > 0 else 1
        return 0

    def stop(self) -> int:
        """SIGTERM every child, wait for the grace, SIGKILL stragglers; 0 if all exited cleanly."""
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + KILL_MARGIN
        worst = 0
        for child in self.children:
            try:
                code = child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"relay: the {child.name} process ignored SIGTERM; killing it")
                child.process.kill()
                code = child.process.wait()
            # A child stopped by our own SIGTERM/SIGINT before it installed its handlers is fine.
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                worst = worst or 1
        return worst


@contextlib.contextmanager
def forwarded_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """Route SIGTERM/SIGINT/SIGHUP to ``on_signal`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_with_supervisor(environ: Mapping[str, str], interval: float = 1.0) -> None:
    """In a child of ``relay up``: SIGTERM ourselves (a graceful stop) if the supervisor dies.

    Covers a supervisor killed with SIGKILL, which cannot forward anything: without this the
    API and the worker would keep running, holding their ports, with nobody to stop them.
    """
    expected = environ.get(SUPERVISOR_PID_ENV)
    if not expected or not expected.isdigit():
        return
    parent = int(expected)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def supervise(
    env: Mapping[str, str],
    *,
    grace: float,
    echo: Echo,
    health_url: str | None,
    commands: Mapping[str, Command] = CHILD_COMMANDS,
    on_ready: Callable[[], None] | None = None,
    output: IO[bytes] | None = None,
    ready_timeout: float = 120.0,
) -> int:
    """Run the children until SIGTERM/SIGINT or a child's death; return the exit code.

    Ready (``on_ready``) once ``health_url`` answers, or at once without one (workers only).
    """
    sup = Supervisor(env, grace=grace, echo=echo, output=output, commands=commands)

    def ready() -> bool:
        return health_url is None or http_ok(health_url)

    with forwarded_signals(sup.request_stop):
        sup.start()
        try:
            if sup.wait_ready(ready, ready_timeout):
                if on_ready is not None:
                    on_ready()
                code = sup.wait()
            elif sup.stop_requested.is_set():
                code = 0
            elif sup.dead_child() is not None:
                code = sup.wait()  # says which child died and returns its code
            else:
                echo(f"relay: the API did not answer {health_url} within {ready_timeout:.0f}s")
                code = 1
        finally:
            stopped = sup.stop()
    return code or stopped
