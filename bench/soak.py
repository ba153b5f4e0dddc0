"""Load soak (not in CI): steady registrations and deliveries for a while, memory sampled all along.

    uv run python -m bench.soak --minutes 30 --rate 20
    uv run python -m bench.soak --minutes 5 --rate 20 --ttl 2m     # a shorter run

Everything runs on loopback and is started here, each process stopped by its own PID at the end:
an embedded Redis (AOF on), the bundled fake Intuned (``relay fake-intuned``, its documented rate
limit on), one ``relay api`` and ``--workers`` ``relay worker`` processes exactly as deployed,
and a flaky receiver in this process (every webhook-id gets one 500, then 200: ``/flaky/1``).

Each second ``--rate`` runs are created on the fake (pending 1-4 s, then completed) and one
subscription registered per run. Every ``--sample`` seconds the RSS of every process and Redis's
``used_memory`` are sampled. When the load stops, the soak waits until every subscription was
delivered, then for the result TTL (``--ttl``, short on purpose) plus two sweeps, so Redis memory
can be seen to return toward its baseline. It prints the memory curve and exits 1 if anything
was lost (a subscription whose webhook never got a 2xx).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from aiohttp import web

from relay.embedded_redis import EmbeddedRedis, free_port
from relay.settings import parse_duration

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = "123e4567-e89b-12d3-a456-426614174000"
INTUNED_KEY = "soak-intuned-key-0123456789"
CLIENT_KEY = "soak-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
PROJECT = "soak-project"


def rss_mib(pid: int, *, children: bool = True) -> float:
    """Resident set size of a process (and its descendants), MiB (from /proc)."""
    total = 0
    for one in _family(pid) if children else [pid]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _family(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for kid in (task / "children").read_text().split():
                out.extend(_family(int(kid)))
    return out


@dataclass
class Receiver:
    """The flaky receiver: the first request of each path gets 500, every later one 200."""

    seen: dict[str, int] = field(default_factory=dict)
    ok: set[str] = field(default_factory=set)
    requests: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        n = self.seen.get(request.path, 0) + 1
        self.seen[request.path] = n
        if n == 1:
            return web.Response(status=500, text="flaky")
        self.ok.add(request.path)
        return web.Response(status=200, text="ok")


@dataclass
class Sample:
    """One point of the memory curve."""

    t: float
    phase: str
    registered: int
    delivered: int
    redis_mib: float
    dataset_mib: float
    redis_keys: int
    rss: dict[str, float]


class Soak:
    """The processes of one soak and the load driven through them."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = EmbeddedRedis(tmp / "redis", persistent=True)
        self.receiver = Receiver()
        self.samples: list[Sample] = []
        self.registered: list[str] = []  # receiver paths, one per subscription
        self.errors = 0
        self.started = time.monotonic()
        self.phase = "baseline"
        self.leftover: list[str] = []
        self.memory_info: dict[str, object] = {}

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """Start ``python -m relay <args>`` with its log in the temp dir."""
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "relay", *args],
            env={**os.environ, **env},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop_all(self) -> None:
        """SIGTERM every child by PID (SIGKILL after 20 s), then Redis."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.redis.stop()

    def sample(self) -> Sample:
        """RSS of every process and Redis memory, now."""
        db = redis.Redis.from_url(self.redis.url)
        try:
            memory = db.info("memory")
            keys = int(db.dbsize())
            self.leftover = sorted(k.decode() for k in db.keys("*")) if keys < 20 else []
        finally:
            db.close()
        stats = self._memory_stats()
        self.memory_info = {k: v for k, v in stats.items() if not isinstance(v, dict | list)}
        used = int(memory["used_memory"]) / 2**20
        dataset = int(memory["used_memory_dataset"]) / 2**20
        assert self.redis.process is not None
        rss = {
            "redis": rss_mib(self.redis.process.pid),
            "soak driver": rss_mib(os.getpid(), children=False),
        }
        rss.update({name: rss_mib(p.pid) for name, p in self.procs.items()})
        point = Sample(
            t=time.monotonic() - self.started,
            phase=self.phase,
            registered=len(self.registered),
            delivered=len(self.receiver.ok),
            redis_mib=used,
            dataset_mib=dataset,
            redis_keys=keys,
            rss=rss,
        )
        self.samples.append(point)
        print(self.row(point), flush=True)
        return point

    def _memory_stats(self) -> dict[str, object]:
        """Redis's MEMORY STATS (where used_memory goes)."""
        db = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            return dict(db.memory_stats())
        finally:
            db.close()

    def header(self) -> str:
        names = ["redis", "api", *sorted(n for n in self.procs if n.startswith("worker"))]
        names += ["fake-intuned", "soak driver"]
        cols = " ".join(f"{n[:12]:>12}" for n in names)
        head = f"{'t(s)':>6} {'phase':>9} {'subs':>7} {'ok':>7} {'redis MiB':>9} {'data MiB':>8}"
        return f"{head} {'keys':>7} {cols}"

    def row(self, s: Sample) -> str:
        names = ["redis", "api", *sorted(n for n in self.procs if n.startswith("worker"))]
        names += ["fake-intuned", "soak driver"]
        cols = " ".join(f"{s.rss.get(n, 0.0):>12.1f}" for n in names)
        return (
            f"{s.t:>6.0f} {s.phase:>9} {s.registered:>7} {s.delivered:>7} "
            f"{s.redis_mib:>9.2f} {s.dataset_mib:>8.2f} {s.redis_keys:>7} {cols}"
        )

    async def sampler(self, stop: asyncio.Event) -> None:
        """Sample every ``--sample`` seconds until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.args.sample)
            if not stop.is_set():
                await asyncio.to_thread(self.sample)

    async def register_one(
        self, i: int, fake: httpx.AsyncClient, api: httpx.AsyncClient, rport: int
    ) -> None:
        """Create one run on the fake and subscribe to it."""
        script = {
            "pendingSeconds": random.uniform(1, 4),
            "outcome": "completed",
            "result": {"i": i},
        }
        try:
            resp = await fake.post("/_fake/runs", json={"projectName": PROJECT, "script": script})
            run_id = resp.raise_for_status().json()["runId"]
            path = f"/flaky/1/{i}"
            body = {
                "projectName": PROJECT,
                "runId": run_id,
                "callbackUrl": f"http://127.0.0.1:{rport}{path}",
                "metadata": {"i": i},
            }
            resp = await api.post("/v1/subscriptions", json=body, headers=AUTH)
            if resp.status_code != 201:
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            self.registered.append(path)
        except (httpx.HTTPError, RuntimeError) as exc:
            self.errors += 1
            if self.errors <= 5:
                print(f"registration {i} failed: {exc!r}", flush=True)

    async def load(self, fake_url: str, api_url: str, rport: int) -> None:
        """``--rate`` registrations per second for ``--minutes``."""
        limits = httpx.Limits(max_connections=64)
        async with (
            httpx.AsyncClient(base_url=fake_url, timeout=30, limits=limits) as fake,
            httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as api,
        ):
            begin = time.monotonic()
            end = begin + self.args.minutes * 60
            tasks: set[asyncio.Task[None]] = set()
            i = 0
            while time.monotonic() < end:
                due = begin + i / self.args.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(self.register_one(i, fake, api, rport))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)
            took = time.monotonic() - begin
            print(f"load done: {len(self.registered)} subscriptions in {took:.0f} s", flush=True)

    async def run(self) -> int:
        args = self.args
        self.redis.start()
        fake_port, api_port, rport = free_port(), free_port(), free_port()
        env = {
            "REDIS_URL": self.redis.url,
            "INTUNED_API_BASE_URL": f"http://127.0.0.1:{fake_port}/api/v1/workspace",
            "INTUNED_WORKSPACE_ID": WORKSPACE,
            "INTUNED_API_KEY": INTUNED_KEY,
            "RELAY_API_KEYS": f"soak:{CLIENT_KEY}",
            "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
            "RELAY_RETRY_SCHEDULE": "2s,10s,30s,1m",
            "RELAY_DELIVERY_TIMEOUT": "5s",
            "RELAY_POLL_INTERVAL": "1s",
            "RELAY_POLL_MAX_INTERVAL": "3s",
            "RELAY_RESULT_TTL": args.ttl,
            "RELAY_HOST": "127.0.0.1",
            "RELAY_PORT": str(api_port),
            "RELAY_WORKER_METRICS_PORT": "0",
            "RELAY_LOG_FORMAT": "json",
        }
        self.spawn("fake-intuned", ["fake-intuned", "--port", str(fake_port)], env)
        self.spawn("api", ["api"], env)
        for n in range(args.workers):
            self.spawn(f"worker-{n}", ["worker"], env)
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self.receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", rport).start()
        api_url, fake_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{fake_port}"
        try:
            await self.wait_up(api_url, fake_url)
            print(
                f"soak: {args.minutes:g} min at {args.rate:g} registrations/s, "
                f"{args.workers} workers, result TTL {args.ttl}; logs in {self.tmp}",
                flush=True,
            )
            print(self.header(), flush=True)
            baseline = await asyncio.to_thread(self.sample)
            stop = asyncio.Event()
            sampler = asyncio.create_task(self.sampler(stop))
            self.phase = "load"
            await self.load(fake_url, api_url, rport)
            self.phase = "drain"
            drained_at = await self.drain()
            self.phase = "ttl"
            # Wait for the TTL to expire everything, plus two sweeps (each minute) to prune.
            ttl = parse_duration(args.ttl, name="--ttl")
            await asyncio.sleep(max(0.0, drained_at + ttl + 125 - time.monotonic()))
            stop.set()
            await sampler
            final = await asyncio.to_thread(self.sample)
        finally:
            await runner.cleanup()
            self.stop_all()
        return self.report(baseline, final)

    async def wait_up(self, api_url: str, fake_url: str) -> None:
        """Until the API's /readyz and the fake answer, and every worker logged its start."""
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    ready = (await http.get(api_url + "/readyz")).status_code == 200
                    fake_ok = (await http.get(fake_url + "/_fake/stats")).status_code == 200
                    workers = all(
                        b"worker_started" in (self.tmp / f"{n}.log").read_bytes()
                        for n in self.procs
                        if n.startswith("worker")
                    )
                    if ready and fake_ok and workers:
                        return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"processes did not come up; see the logs in {self.tmp}")

    async def drain(self) -> float:
        """Wait until every registered subscription got its 2xx (or the drain timeout)."""
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            if len(self.receiver.ok) >= len(self.registered):
                break
            await asyncio.sleep(1)
        took = time.monotonic()
        print(f"drained: {len(self.receiver.ok)}/{len(self.registered)} delivered", flush=True)
        return took

    def report(self, baseline: Sample, final: Sample) -> int:
        lost = sorted(set(self.registered) - self.receiver.ok)
        dups = sum(max(0, n - 2) for n in self.receiver.seen.values())
        load = [s for s in self.samples if s.phase in ("load", "drain")]
        peak = max(load, key=lambda s: s.redis_mib) if load else final
        print("\n" + self.header())
        for s in self.samples:
            print(self.row(s))
        print(
            f"\nregistered {len(self.registered)} (errors {self.errors}), delivered "
            f"{len(self.receiver.ok)}, lost {len(lost)}, requests {self.receiver.requests} "
            f"(each webhook-id: one 500 then one 200; extra requests beyond that: {dups})"
        )
        print(
            f"redis used_memory MiB: baseline {baseline.redis_mib:.2f}, peak {peak.redis_mib:.2f}"
            f" (t={peak.t:.0f} s), after TTL+sweeps {final.redis_mib:.2f}; keys baseline "
            f"{baseline.redis_keys}, peak {peak.redis_keys}, end {final.redis_keys} "
            f"{self.leftover}; dataset MiB baseline {baseline.dataset_mib:.2f}, peak "
            f"{peak.dataset_mib:.2f}, end {final.dataset_mib:.2f}"
        )
        parts = ("overhead.total", "clients.normal", "aof.buffer", "lua.caches", "dataset.bytes")
        print(
            "redis at the end (bytes): "
            + ", ".join(f"{k}={self.memory_info.get(k)}" for k in parts)
        )
        print("(RSS in MiB; 'api' and each process include their child processes)")
        for name in baseline.rss:
            curve = [s.rss.get(name, 0.0) for s in self.samples]
            print(
                f"rss MiB {name:>13}: start {curve[0]:.1f}, max {max(curve):.1f}, "
                f"end {curve[-1]:.1f}"
            )
        if lost:
            print(f"LOST: {lost[:20]}")
        return 1 if lost else 0


def main() -> None:
    """Parse the arguments and run one soak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="load duration (default 30)")
    parser.add_argument("--rate", type=float, default=20.0, help="registrations per second")
    parser.add_argument("--workers", type=int, default=2, help="relay worker processes")
    parser.add_argument("--ttl", default="2m", help="RELAY_RESULT_TTL for the run (default 2m)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this directory")
    args = parser.parse_args()
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        sys.exit(asyncio.run(Soak(args, args.logs).run()))
    with tempfile.TemporaryDirectory(prefix="relay-soak-") as tmp:
        sys.exit(asyncio.run(Soak(args, Path(tmp)).run()))


if __name__ == "__main__":
    main()
