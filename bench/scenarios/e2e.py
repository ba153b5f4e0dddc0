"""End to end: register through the API -> one poll -> one signed delivery, per run.

Relay side: one ``relay api`` (granian, one worker) and one ``relay worker`` process. The fake
holds N runs that are already completed (the first poll is terminal, a ~2 KB result); the bench
registers one subscription per run with ``POST /v1/subscriptions`` at 64 connections; the worker
polls each run once and delivers its ``run.completed`` webhook to the receiver. Rate: N over the
time from the first registration sent to the last verified receipt.

Baseline, interleaved: a raw aiohttp loop in the bench process doing exactly the work the relay
exists to do, at the same concurrency: GET the run's result from the fake, build the same event
body, sign it, POST it to the receiver. Rate counted the same way (start to last receipt).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
import msgspec

from bench.common import Bench, Row, ratio_row
from bench.load import run_lanes, session
from bench.procs import CLIENT_KEY, INTUNED_KEY, PROJECT, SECRET, WORKSPACE, CpuMeter, wait_http
from bench.scenarios.delivery import wait_receipts
from relay.embedded_redis import free_port
from relay.webhooks.payload import build_event_body
from relay.webhooks.signing import webhook_headers, webhook_id

LANES = 64
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
SCRIPT = {"outcome": "completed", "result": {"items": ["x" * 90] * 20}}  # ~2 KB, first poll


def rate(t0: float, receipts: dict[str, float]) -> float:
    """Runs per second from ``t0`` (wall clock) to the last receipt."""
    if not receipts:
        return 0.0
    return len(receipts) / max(max(receipts.values()) - t0, 1e-6)


async def relay_rep(b: Bench, api_url: str, n: int, tag: str) -> tuple[float, dict[str, float]]:
    """Register n runs through the API; (rate to the last receipt, CPU % per process)."""
    await b.receiver_reset()
    await b.fake_runs(f"e2e-{tag}-", n, SCRIPT)
    callback = (b.fleet.receiver_root + "/hook").encode()
    sub_ids: list[str] = [""] * n

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        body = b'{"projectName":"%s","runId":"e2e-%s-%d","callbackUrl":"%s"}' % (
            PROJECT.encode(),
            tag.encode(),
            i,
            callback,
        )
        async with http.post(api_url, data=body, headers=AUTH) as resp:
            sub_ids[i] = msgspec.json.decode(await resp.read())["id"]
            return resp.status

    meter = CpuMeter(b.state["e2e-pids"])
    t0 = time.time()
    async with session(LANES) as http:
        res = await run_lanes(http, LANES, one, count=n)
    ids = [webhook_id(s, "run.completed") for s in sub_ids if s]
    got = await wait_receipts(b, ids, timeout=60 + n / 50)
    cpu = meter.read()
    if len(got) < n or res.errors:
        b.notes.append(f"e2e {tag}: {len(got)}/{n} received, {res.errors} registration errors")
    return rate(t0, got), cpu


async def baseline_rep(b: Bench, n: int, tag: str) -> float:
    """GET result + build + sign + POST per run, 64 in flight; rate to the last receipt."""
    await b.receiver_reset()
    await b.fake_runs(f"e2eb-{tag}-", n, SCRIPT)
    base = f"{b.fleet.intuned_base}/{WORKSPACE}/projects/{PROJECT}/run"
    callback = b.fleet.receiver_root + "/hook"
    get_headers = {"x-api-key": INTUNED_KEY, "accept": "application/json"}
    ids = [f"msg_e2e_{tag}_{i}" for i in range(n)]

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        run_id = f"e2eb-{tag}-{i}"
        async with http.get(f"{base}/{run_id}/result", headers=get_headers) as r:
            envelope = msgspec.json.decode(await r.read(), type=dict[str, msgspec.Raw])
        body = build_event_body(
            event_type="run.completed",
            occurred_at=datetime.now(UTC),
            subscription_id="sub_baseline",
            workspace_id=WORKSPACE,
            project_name=PROJECT,
            run_id=run_id,
            intuned_fields=envelope,
            metadata=None,
        )
        headers = webhook_headers(ids[i], int(time.time()), body, [SECRET])
        async with http.post(callback, data=body, headers=headers, allow_redirects=False) as r:
            await r.content.read(1024)
            return r.status

    t0 = time.time()
    async with session(LANES) as http:
        await run_lanes(http, LANES, one, count=n)
    return rate(t0, await b.receipts(ids))


async def run(b: Bench) -> list[Row]:
    """One API + one worker for the whole scenario; interleaved repetitions."""
    fleet = b.fleet
    port = free_port()
    api = fleet.spawn(
        "api", ["-m", "relay", "api"], fleet.relay_env(RELAY_HOST="127.0.0.1", RELAY_PORT=str(port))
    )
    worker = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
        worker = fleet.worker()
        fleet.profile(api)
        b.state["e2e-pids"] = {"api": api.pid, "worker": worker.pid}
        url = f"http://127.0.0.1:{port}/v1/subscriptions"
        n = 300 if b.smoke else 3000
        reps = 1 if b.smoke else 5
        if not b.smoke:
            await relay_rep(b, url, 500, "warm")
            await baseline_rep(b, 500, "warm")
        rates: dict[str, list[float]] = {"relay": [], "baseline": []}
        cpus: list[str] = []
        for rep in range(reps):
            relay_rate, cpu = await relay_rep(b, url, n, f"r{rep}")
            base_rate = await baseline_rep(b, n, f"b{rep}")
            rates["relay"].append(relay_rate)
            rates["baseline"].append(base_rate)
            cpus.append(str(cpu))
            b.log(f"e2e relay {relay_rate:,.0f}/s (cpu {cpu}), raw {base_rate:,.0f}/s")
    finally:
        if worker is not None:
            fleet.stop_child(worker)
        fleet.stop_child(api)
        await b.flush()
    metric = "runs/s, register -> poll -> deliver (one API + one worker process)"
    note = f"{n} runs per repetition; relay CPU % of one core per window: " + "; ".join(cpus)
    return [ratio_row("e2e", metric, "runs/s", rates, 0.5, note)]
