"""The processes a benchmark run starts on loopback, and how each is stopped (by its PID).

Everything here is a child of the bench process: a dedicated embedded Redis (no persistence),
the fake Intuned and the receiver in their own processes (so they never share the GIL with the
thing measured), and the relay's own ``relay api`` / ``relay worker`` exactly as deployed.
``Fleet`` remembers every child and stops each one by PID, SIGTERM first, SIGKILL after a grace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from relay.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = "123e4567-e89b-12d3-a456-426614174000"
INTUNED_KEY = "bench-intuned-key-0123456789"
CLIENT = "bench"
CLIENT_KEY = "bench-key-0123456789abcdef"
SECRET = "whsec_" + "YmVuY2gtc2lnbmluZy1zZWNyZXQtMzItYnl0ZXMhISE="  # 32 fixed bytes
PROJECT = "bench-project"


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out.extend(_descendants(int(kid)))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its descendants (alive ones)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Block until ``url`` answers anything below 500."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


class Child:
    """One child process with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        """The child's PID."""
        return self.proc.pid

    def wait_log(self, marker: bytes, timeout: float = 30.0, count: int = 1) -> None:
        """Block until the child's log contains ``marker`` (``count`` times)."""
        deadline = time.monotonic() + timeout
        while self.log_path.read_bytes().count(marker) < count:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {marker!r}")
            time.sleep(0.05)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM this PID, wait, SIGKILL if it hangs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def relay_env(redis_url: str, intuned_base: str, **overrides: str) -> dict[str, str]:
    """The relay's environment for a bench run; ``overrides`` use the variable names."""
    return {
        "REDIS_URL": redis_url,
        "INTUNED_API_BASE_URL": intuned_base,
        "INTUNED_WORKSPACE_ID": WORKSPACE,
        "INTUNED_API_KEY": INTUNED_KEY,
        "RELAY_API_KEYS": f"{CLIENT}:{CLIENT_KEY}",
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_WORKER_METRICS_PORT": "0",
        "RELAY_SHUTDOWN_GRACE": "5s",
        "RELAY_LOG_FORMAT": "json",
        **overrides,
    }


class Fleet:
    """The bench's children: one Redis, one fake, one receiver, relay processes on demand."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.children: list[Child] = []
        self._seq = 0  # log files are never shared: each child gets its own
        self.redis = EmbeddedRedis(self.dir / "redis", persistent=False)
        self.fake_port = free_port()
        self.receiver_port = free_port()

    @property
    def fake_root(self) -> str:
        """``http://127.0.0.1:PORT`` of the fake Intuned."""
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def intuned_base(self) -> str:
        """The Intuned base URL the relay is given."""
        return self.fake_root + "/api/v1/workspace"

    @property
    def receiver_root(self) -> str:
        """``http://127.0.0.1:PORT`` of the receiver."""
        return f"http://127.0.0.1:{self.receiver_port}"

    def start(self) -> None:
        """Start Redis, the fake Intuned and the receiver."""
        self.redis.start()
        self.fake = self.spawn("fake", ["-m", "bench.fake_server", "--port", str(self.fake_port)])
        self.receiver = self.spawn(
            "receiver",
            ["-m", "bench.receiver", "--port", str(self.receiver_port), "--secret", SECRET],
        )
        wait_http(self.fake_root + "/_fake/stats")
        wait_http(self.receiver_root + "/_stats")

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        """Start ``python <args>`` as a child; it is stopped by ``stop``."""
        full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._seq += 1
        log = self.dir / f"{name}-{self._seq}.log"
        child = Child(name, [sys.executable, *args], full, log)
        self.children.append(child)
        return child

    def relay_env(self, **overrides: str) -> dict[str, str]:
        """The relay's environment for this fleet; ``overrides`` use the variable names."""
        return relay_env(self.redis.url, self.intuned_base, **overrides)

    def worker(self, processes: int = 1, **overrides: str) -> Child:
        """Start ``relay worker`` (as deployed: ``python -m relay worker``) and wait for it.

        ``processes`` > 1 sets RELAY_WORKER_PROCESSES: the child is then the supervisor and
        this waits until every worker process it runs has started.
        """
        env = self.relay_env(RELAY_WORKER_PROCESSES=str(processes), **overrides)
        child = self.spawn("worker", ["-m", "relay", "worker"], env)
        child.wait_log(b"worker_started", count=processes)
        self.profile(child)
        return child

    def profile(self, child: Child) -> None:
        """With BENCH_PYSPY=<dir>, sample ``child`` with py-spy (raw collapsed stacks) until it
        exits (``--subprocesses``: every worker process of a supervisor, every granian worker).
        py-spy is a dev dependency; ``python -m bench.profile`` runs this and summarises."""
        out = os.environ.get("BENCH_PYSPY")
        if not out:
            return
        Path(out).mkdir(parents=True, exist_ok=True)
        dest = Path(out) / f"{child.name}-{child.pid}.txt"
        exe = Path(sys.executable).parent / "py-spy"
        args = [str(exe), "record", "--pid", str(child.pid), "--format", "raw", "-o", str(dest)]
        args += ["--rate", "250", "--subprocesses", "--nonblocking"]
        self._seq += 1
        log = self.dir / f"py-spy-{self._seq}.log"
        self.children.append(Child("py-spy", args, dict(os.environ), log))

    def stop_child(self, child: Child) -> None:
        """Stop one child now."""
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop(self) -> None:
        """Stop every child by PID (newest first), then Redis."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.redis.stop()
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)


class CpuMeter:
    """CPU use of named processes over a window, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {n: cpu_seconds(p) for n, p in pids.items()}
        self._t0 = time.monotonic()

    def read(self) -> dict[str, float]:
        """% of one core each process used since the meter was made."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        return {
            n: round(100 * (cpu_seconds(p) - self._start[n]) / elapsed, 1)
            for n, p in self.pids.items()
        }


def _schedstat_fds(pid: int) -> list[int]:
    """Open ``/proc/<pid>/task/<tid>/schedstat`` of every thread of a process and its
    descendants (as they are now), to be read with ``pread`` per sample: no directory walk then."""
    fds = []
    for p in _descendants(pid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    fds.append(os.open(f"/proc/{p}/task/{tid}/schedstat", os.O_RDONLY))
    return fds


def _sched_ns(fds: list[int]) -> tuple[int, int]:
    """Nanoseconds on a CPU and waiting for one (runnable, in the run queue), summed."""
    ran = waited = 0
    for fd in fds:
        try:
            on_cpu, run_queue, _ = os.pread(fd, 128, 0).split()
        except (OSError, ValueError):  # the thread ended
            continue
        ran += int(on_cpu)
        waited += int(run_queue)
    return ran, waited


class CpuTrace:
    """CPU use of named processes sampled every ``every`` seconds by a thread, so that a share can
    be read afterwards for any window inside the trace: a delivery window runs from the first to
    the last receipt, known only at its end (``CpuMeter`` over the whole wait also counted the
    wake-up and the receipt polling's tail, ~15 % of a 0.7 s window). A sample is a ``pread`` of
    each thread's schedstat (~20 us each): the bench shares the machine with what it measures."""

    def __init__(self, pids: dict[str, int], every: float = 0.02) -> None:
        self.names = list(pids)
        self.every = every
        self._fds = {n: _schedstat_fds(p) for n, p in pids.items()}
        self._samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            self._samples.append((time.time(), {n: _sched_ns(f) for n, f in self._fds.items()}))
            if self._stop.wait(self.every):
                return

    def close(self) -> None:
        """Stop sampling (one last sample is taken) and close the files."""
        self._stop.set()
        self._thread.join()
        for fds in self._fds.values():
            for fd in fds:
                os.close(fd)

    def share(self, t0: float, t1: float) -> dict[str, float]:
        """% of one core each process ran between wall-clock times ``t0`` and ``t1`` (the
        samples around them), and ``<name> queued``: % of that window it waited for a core."""
        before = [s for s in self._samples if s[0] <= t0] or self._samples[:1]
        after = [s for s in self._samples if s[0] >= t1] or self._samples[-1:]
        (ta, a), (tb, b) = before[-1], after[0]
        span = max(tb - ta, 1e-9) * 1e9
        out: dict[str, float] = {}
        for n in self.names:
            out[n] = round(100 * (b[n][0] - a[n][0]) / span, 1)
            out[f"{n} queued"] = round(100 * (b[n][1] - a[n][1]) / span, 1)
        return out
