"""Upstream cost with Intuned's push: start-and-watch vs poll-only vs the naive 3 s loop, live.

Real clock, default poll settings (3 s growing to 30 s; push fallback 60 s), runs that end
``D`` seconds after they start (20 s; 4 s in smoke). Three sides run side by side in one window,
each with ``N`` runs started 0.4 s apart (so run ends fall at different phases of every poll
curve):

- **push**: ``POST /v1/runs`` on a ``relay api`` with ``RELAY_PUBLIC_URL`` set (its own port):
  the fake starts the run with the relay's sink and pushes to the ingress when the run ends;
- **poll-only**: runs created in the fake and registered by id (today's path), same worker;
- **naive**: Intuned's SDK polling on a fixed 3 s tick until terminal.

Notice delay = the moment the side knew (webhook receipt at the receiver for the relay sides,
the first terminal answer for the naive loop) minus the run's end (its creation on the fake's
monotonic clock + D, moved to wall time). Intuned calls = result requests the fake answered for
the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from intuned_client import AsyncIntunedClient

from bench.common import Bench, Row
from bench.load import percentile
from bench.procs import CLIENT_KEY, INTUNED_KEY, PROJECT, WORKSPACE, wait_http
from relay.embedded_redis import free_port
from relay.model import TERMINAL_STATUSES
from relay.webhooks.signing import webhook_id

NAIVE_INTERVAL = 3.0
STAGGER = 0.4


async def naive_sdk(sdk: AsyncIntunedClient, run_id: str, interval: float = NAIVE_INTERVAL) -> None:
    """Poll with the SDK on a fixed tick of ``interval`` until the run is terminal."""
    loop = asyncio.get_running_loop()
    start, tick = loop.time(), 0
    while True:
        res = await sdk.projects.runs.result(project_name=PROJECT, run_id=run_id)
        if res.status in TERMINAL_STATUSES:
            return
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))


async def _start_pushed(b: Bench, api: str, i: int) -> tuple[str, str]:
    """One run started through the relay: (run id, webhook id of its run.completed)."""
    body = {"projectName": PROJECT, "callbackUrl": b.fleet.receiver_root + "/hook"}
    body |= {"api": "bench", "parameters": {"i": i}}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Idempotency-Key": f"push-{i}"}
    async with b.http.post(api + "/v1/runs", json=body, headers=headers) as r:
        out: dict[str, Any] = await r.json()
        assert r.status == 201, out
    return out["runId"], webhook_id(out["subscription"]["id"], "run.completed")


async def _sides(b: Bench, api: str, d: float, n: int) -> dict[str, dict[str, str]]:
    """Start the three sides' runs, staggered; {side: {run id: webhook id or ''}}."""
    script = {"pendingSeconds": d, "outcome": "completed", "result": {"ok": True}}
    async with b.http.post(
        b.fleet.fake_root + "/_fake/config", json={"defaultScript": script}
    ) as r:
        assert r.status == 200, await r.text()
    sides: dict[str, dict[str, str]] = {"push": {}, "poll": {}, "naive": {}}
    tasks: list[asyncio.Task[None]] = []
    async with AsyncIntunedClient(
        api_key=INTUNED_KEY, workspace_id=WORKSPACE, base_url=b.fleet.intuned_base
    ) as sdk:
        for i in range(n):
            run_id, msg = await _start_pushed(b, api, i)
            sides["push"][run_id] = msg
            await b.fake_runs(f"up-poll-{i}-", 1, script)
            [doc] = await b.register_many([f"up-poll-{i}-0"], b.fleet.receiver_root + "/hook")
            sides["poll"][doc.run_id] = webhook_id(doc.id, "run.completed")
            await b.fake_runs(f"up-naive-{i}-", 1, script)
            sides["naive"][f"up-naive-{i}-0"] = ""
            tasks.append(asyncio.create_task(naive_sdk(sdk, f"up-naive-{i}-0")))
            await asyncio.sleep(STAGGER)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=d + 60)
    return sides


async def _measure(b: Bench, sides: dict[str, dict[str, str]], d: float) -> dict[str, Any]:
    """Wait for the relay sides' webhooks (bounded); delays and calls per side."""
    msgs = [m for side in ("push", "poll") for m in sides[side].values()]
    deadline = time.monotonic() + 45
    got: dict[str, float] = {}
    while len(got) < len(msgs) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        got = await b.receipts(msgs)
    offset = time.time() - time.monotonic()  # the fake's clock is this machine's monotonic one
    out: dict[str, Any] = {}
    for side, runs in sides.items():
        info = await b.fake_info(list(runs))
        delays, calls = [], []
        for run_id, msg in runs.items():
            end_wall = info[run_id]["createdAt"] + d + offset
            known = got.get(msg) if msg else info[run_id]["firstTerminalWall"]
            if known is not None:
                delays.append(known - end_wall)
            calls.append(float(info[run_id]["polls"]))
        out[side] = {"delays": delays, "calls": calls}
    return out


def _p(values: list[float]) -> str:
    if not values:
        return "none measured"
    return f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s"


def _rows(m: dict[str, Any], label: str) -> list[Row]:
    push, poll, naive = m["push"], m["poll"], m["naive"]
    pd = push["delays"]
    met_delay = bool(pd) and percentile(pd, 0.5) <= 1.0 and percentile(pd, 0.99) <= 3.0
    note = (
        f"push {_p(pd)}; poll-only {_p(poll['delays'])}; naive 3 s loop {_p(naive['delays'])}; "
        f"calls per run: push {push['calls']}, poll-only {poll['calls']}, naive {naive['calls']}"
    )
    return [
        Row("upstream", f"live notice delay, {label} run, push (POST /v1/runs + sink) vs naive",
            "s", pd or [float("nan")], naive["delays"] or None, "p50 <= 1 s, p99 <= 3 s",
            met_delay, higher_is_better=False, note=note),
        Row("upstream", f"live notice delay, {label} run, poll-only (registered by id) vs naive",
            "s", poll["delays"] or [float("nan")], naive["delays"] or None, "— (context)",
            None, higher_is_better=False),
        Row("upstream", f"live Intuned calls, {label} run, push vs naive", "calls",
            push["calls"], naive["calls"], "<= 3 calls",
            bool(push["calls"]) and max(push["calls"]) <= 3, higher_is_better=False),
        Row("upstream", f"live Intuned calls, {label} run, poll-only vs naive", "calls",
            poll["calls"], naive["calls"], "— (context)", None, higher_is_better=False),
    ]  # fmt: skip


async def run_push(b: Bench) -> list[Row]:
    """The live push comparison (its own API process with RELAY_PUBLIC_URL, one worker)."""
    d, n = (4.0, 2) if b.smoke else (20.0, 10)
    await b.flush()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = b.fleet.relay_env(RELAY_HOST="127.0.0.1", RELAY_PORT=str(port), RELAY_PUBLIC_URL=api)
    api_child = b.fleet.spawn("api", ["-m", "relay", "api"], env)
    worker = b.fleet.worker()
    try:
        wait_http(api + "/healthz", timeout=60)
        sides = await _sides(b, api, d, n)
        measured = await _measure(b, sides, d)
    finally:
        b.fleet.stop_child(worker)
        b.fleet.stop_child(api_child)
        await b.flush()
    b.log(f"upstream push live (D={d:g} s, {n} runs a side): {measured}")
    return _rows(measured, f"{d:g} s")
