"""Real ``relay`` command processes for tests: ``relay api``, ``relay up``, ``relay demo``.

Each child's stdout and stderr go to a log file the test can read; ``stop()`` sends SIGTERM and
waits, killing only its own process (by pid) if it hangs. Nothing here kills by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class RelayProcess:
    """``python -m relay <args>`` with ``env`` (replacing, not extending, the relay settings)."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", *args],
            env=clean_env(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Block until ``text`` appears in the log; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"relay {self.args} exited {self.proc.returncode}: {self.tail()}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not logged by relay {self.args} in {timeout}s: {self.tail()}")

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Block until ``url`` answers 200; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"relay {self.args} exited {self.proc.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not answer in {timeout}s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the log, for failure messages."""
        return self.log()[-chars:]

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        try:
            return int(self.proc.wait(timeout))
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL after ``timeout``); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without relay settings, plus ``env``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RELAY_", "INTUNED_")) and k != "REDIS_URL"
    }
    return {**keep, **env}


def children_of(pid: int) -> list[int]:
    """Direct child process ids of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    """A process's command line, space-separated ('' if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
