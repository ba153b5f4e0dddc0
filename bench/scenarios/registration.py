"""Registration: ``POST /v1/subscriptions`` at 64 connections, ``relay api`` vs a bare Litestar app.

Both servers run side by side for the whole scenario (granian, uvloop, one worker) on the same
Redis; windows alternate relay/baseline (and which goes first) so drift hits both alike. Every
request registers a new run (a unique runId) with an IP-literal loopback callback, so the relay
does its whole path: auth, validation, SSRF check without DNS, the REGISTER script, the arq kick
(``poll_now``; no worker runs here) and the read-back of the new subscription.
"""

from __future__ import annotations

import asyncio
import itertools

import aiohttp

from bench.common import Bench, Row
from bench.load import LoadResult, run_lanes, session
from bench.procs import CLIENT_KEY, CpuMeter, wait_http
from relay.embedded_redis import free_port

CONNECTIONS = 64
CALLBACK = "http://127.0.0.1:9/hook"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
_ids = itertools.count()


def body(run_id: str) -> bytes:
    """A registration of ``run_id`` (new each time: every one starts a watch)."""
    return b'{"projectName":"bench-project","runId":"%s","callbackUrl":"%s"}' % (
        run_id.encode(),
        CALLBACK.encode(),
    )


async def register(http: aiohttp.ClientSession, url: str, run_id: str) -> int:
    """POST one registration; its status code."""
    async with http.post(url, data=body(run_id), headers=AUTH) as resp:
        await resp.read()
        return resp.status


async def window(url: str, seconds: float) -> LoadResult:
    """``seconds`` of registrations against ``url`` at 64 connections."""
    tag = next(_ids)

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        return await register(http, url, f"reg-{tag}-{i}")

    async with session(CONNECTIONS) as http:
        return await run_lanes(http, CONNECTIONS, one, seconds=seconds)


def prepare(b: Bench) -> None:
    """Start both servers early: they import for seconds on a busy box, while others measure."""
    fleet = b.fleet
    api_port, bare_port = free_port(), free_port()
    env = fleet.relay_env(RELAY_HOST="127.0.0.1", RELAY_PORT=str(api_port))
    b.state["api"] = (fleet.spawn("api", ["-m", "relay", "api"], env), api_port)
    b.state["bare"] = (
        fleet.spawn(
            "bare", ["-m", "bench.bare_app", "--port", str(bare_port), "--redis", fleet.redis.url]
        ),
        bare_port,
    )


async def run(b: Bench) -> list[Row]:
    """Measure and return the rows."""
    fleet = b.fleet
    if "api" not in b.state:
        prepare(b)
    api, api_port = b.state.pop("api")
    bare, bare_port = b.state.pop("bare")
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout=60)
        wait_http(f"http://127.0.0.1:{bare_port}/v1/subscriptions", timeout=60)
        fleet.profile(api)
        urls = {
            "relay": f"http://127.0.0.1:{api_port}/v1/subscriptions",
            "baseline": f"http://127.0.0.1:{bare_port}/v1/subscriptions",
        }
        pids = {"relay": api.pid, "baseline": bare.pid}
        seconds = 1.5 if b.smoke else 5.0
        reps = 1 if b.smoke else 5
        for name, url in urls.items():  # warm-up: connections, caches, JIT-less Python paths
            await window(url, 0.5 if b.smoke else 2.0)
            b.log(f"registration warm-up {name} done")
        rates: dict[str, list[float]] = {"relay": [], "baseline": []}
        p99s: dict[str, list[float]] = {"relay": [], "baseline": []}
        cpu: dict[str, list[float]] = {"relay": [], "baseline": []}
        bad: dict[str, int] = {"relay": 0, "baseline": 0}
        for rep in range(reps):
            # Pairs: rep i's relay window and baseline window are adjacent in time (the order
            # alternates), and the ratio is the median of the per-pair ratios.
            order = ["relay", "baseline"] if rep % 2 == 0 else ["baseline", "relay"]
            for name in order:
                meter = CpuMeter({"server": pids[name], "redis": fleet.redis.process.pid})  # type: ignore[union-attr]
                res = await window(urls[name], seconds)
                cpu[name].append(meter.read()["server"])
                rates[name].append(res.rate)
                p99s[name].append(res.p99_ms)
                bad[name] += res.errors + sum(n for s, n in res.statuses.items() if s != 201)
                b.log(
                    f"registration {name}: {res.rate:,.0f} req/s p99 {res.p99_ms:.1f} ms "
                    f"statuses {dict(res.statuses)} server cpu {cpu[name][-1]}%"
                )
            await asyncio.sleep(0)
        note = (
            f"server CPU (% of one core, median): relay {_median(cpu['relay'])}"
            f", bare {_median(cpu['baseline'])}; "
            f"non-201 or failed: relay {bad['relay']}, bare {bad['baseline']}"
        )
        return [
            Row(
                "registration",
                "req/s at 64 connections",
                "req/s",
                rates["relay"],
                rates["baseline"],
                "ratio >= 0.7",
                None,
                note=note,
                ratio_min=0.7,
            ),
            Row(
                "registration",
                "p99 latency at 64 connections",
                "ms",
                p99s["relay"],
                p99s["baseline"],
                "ratio <= 2 (mirror of >= 0.5)",
                None,
                higher_is_better=False,
                ratio_max=2.0,
            ),
        ]
    finally:
        fleet.stop_child(api)
        fleet.stop_child(bare)
        await b.flush()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0
