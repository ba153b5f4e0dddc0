"""Delivery: deliveries/s of ONE ``relay worker``, terminal run -> verified receipt, 2 KB result.

Relay side, per repetition: with no worker running, N subscriptions are registered and their
runs recorded terminal (``Store.record_result`` with a ~2 KB completed envelope, exactly what a
poll stores), so all N are due at once; then one worker starts at its configured concurrency
(RELAY_WORKER_CONCURRENCY, default 64) and drains them: build the body from the cached result,
store it, sign, POST, record the attempt. The rate is counted at the receiver, from its first to
its last verified receipt, so the worker's start-up is not in it.

The worker runs with RELAY_MAX_IN_FLIGHT_PER_HOST equal to its concurrency: every delivery here
goes to one receiver, and this row measures the worker's pool against a raw loop at the same
concurrency; at the default per-host cap (8) only 8 POSTs would be in flight (see the fairness
section of bench/NOTES.md for what that costs a single-receiver deployment).

Baseline, interleaved: a raw aiohttp loop in the bench process POSTs the same body, signed per
request (one HMAC each, as the relay does), to the same receiver at the same concurrency; rate
counted the same way at the receiver.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import msgspec

from bench.common import Bench, Row, ratio_row
from bench.load import run_lanes, session
from bench.procs import SECRET, CpuMeter, CpuTrace
from relay.model import EventType, RunStatus, SubscriptionDoc, run_key
from relay.settings import Settings
from relay.store import keys, run_digest
from relay.webhooks.payload import build_event_body
from relay.webhooks.signing import webhook_headers, webhook_id

# The worker's configured default (RELAY_WORKER_CONCURRENCY unset).
CONCURRENCY = Settings(redis_url=None, intuned_workspace_id="w", api_keys={}).worker_concurrency


def result_envelope(run_id: str) -> bytes:
    """A completed Intuned envelope whose JSON is ~2 KB."""
    return msgspec.json.encode(
        {"runId": run_id, "status": "completed", "result": {"items": ["x" * 90] * 20}}
    )


async def make_due(b: Bench, docs: list[SubscriptionDoc]) -> None:
    """Record every run terminal (a 2 KB completed envelope) and fan it out, as a poll would."""

    async def finish(d: SubscriptionDoc) -> None:
        rd = run_digest(run_key(d.project_name, d.run_id))
        await b.store.watches.record_result(
            rd, RunStatus.COMPLETED, result_envelope(d.run_id), 0, 0.0
        )
        await b.store.watches.fan_out_all(rd)

    for lo in range(0, len(docs), 256):
        await asyncio.gather(*(finish(d) for d in docs[lo : lo + 256]))


async def wait_receipts(b: Bench, ids: list[str], timeout: float) -> dict[str, float]:
    """Poll the receiver until every id arrived (or the timeout); return first receipts."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await b.receiver_stats()
        if stats["unique"] >= len(ids) or time.monotonic() > deadline:
            return await b.receipts(ids)
        await asyncio.sleep(0.1)


def rate_from(receipts: dict[str, float]) -> float:
    """Receipts per second between the first and the last one."""
    times = sorted(receipts.values())
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


async def parked_due(
    b: Bench, run_ids: list[str], callback: str
) -> tuple[list[SubscriptionDoc], list[bytes]]:
    """A fresh database with one subscription per run id, each with a delivery due but parked:
    every worker process must be up before the first delivery is due, so the due entries wait
    a day ahead until ``release_due``. Returns the documents and the due set's members."""
    await b.flush()
    await b.receiver_reset()
    docs = await b.register_many(run_ids, callback)
    await b.redis.delete(keys.DUE_POLL)  # no worker runs yet; nobody must poll these runs
    await make_due(b, docs)
    due: list[bytes] = await b.redis.zrange(keys.DUE_DELIVERY, 0, -1)
    await b.redis.zadd(keys.DUE_DELIVERY, dict.fromkeys(due, 2**50))
    return docs, due


async def release_due(b: Bench, due: list[bytes]) -> None:
    """Make the parked deliveries all due at once and wake the pumps."""
    await b.redis.zadd(keys.DUE_DELIVERY, dict.fromkeys(due, 0))
    await b.redis.publish(keys.WAKE_DELIVERY, b"1")


async def relay_rep(
    b: Bench, n: int, tag: str, callback: str, processes: int = 1
) -> tuple[float, dict[str, float]]:
    """One relay repetition (``processes`` worker processes); returns (rate, cpu%)."""
    docs, due = await parked_due(b, [f"dlv-{tag}-{i}" for i in range(n)], callback)
    ids = [webhook_id(d.id, EventType.COMPLETED) for d in docs]
    worker = b.fleet.worker(processes, RELAY_MAX_IN_FLIGHT_PER_HOST=str(CONCURRENCY))
    redis = b.fleet.redis.process
    assert redis is not None  # started with the fleet
    trace = CpuTrace({"worker": worker.pid, "receiver": b.fleet.receiver.pid, "redis": redis.pid})
    await release_due(b, due)
    try:
        got = await wait_receipts(b, ids, timeout=60 + n / 50)
    finally:
        trace.close()
        b.fleet.stop_child(worker)
    times = sorted(got.values()) or [0.0]
    cpu = trace.share(times[0], times[-1])  # the rate's own window
    stats = await b.receiver_stats()
    if len(got) < n or stats["bad"]:
        b.notes.append(f"delivery {tag}: {len(got)}/{n} received, {stats['bad']} bad signatures")
    rate = rate_from(got)
    if rate and processes == 1:  # the worker's CPU per delivery, beside the raw loop's per POST
        cpu["worker us per delivery"] = round(cpu["worker"] * 1e4 / rate, 1)
    return rate, cpu


def baseline_body() -> bytes:
    """The event body the baseline sends: a completed event with the same 2 KB result."""
    return build_event_body(
        event_type=EventType.COMPLETED,
        occurred_at=datetime.now(UTC),
        subscription_id="sub_baseline",
        workspace_id="ws",
        project_name="bench-project",
        run_id="base",
        intuned_fields=msgspec.json.decode(result_envelope("base"), type=dict[str, msgspec.Raw]),
        metadata=None,
    )


async def raw_loop(callback: str, ids: list[str]) -> None:
    """The baseline: one signed POST of the same event body per id, raw aiohttp, at the
    worker's concurrency (also run alone under callgrind by ``bench.instructions_delivery``)."""
    body = baseline_body()

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        headers = webhook_headers(ids[i], int(time.time()), body, [SECRET])
        async with http.post(callback, data=body, headers=headers, allow_redirects=False) as r:
            await r.content.read(1024)
            return r.status

    async with session(CONCURRENCY) as http:
        await run_lanes(http, CONCURRENCY, one, count=len(ids))


async def baseline_rep(b: Bench, n: int, tag: str, callback: str) -> tuple[float, dict[str, float]]:
    """One baseline repetition: raw aiohttp, same body, same receiver, same concurrency."""
    await b.receiver_reset()
    ids = [f"msg_{tag}_{i}" for i in range(n)]
    meter = CpuMeter({"receiver": b.fleet.receiver.pid})
    used = time.process_time()  # this process runs the raw loop (and nothing else meanwhile)
    await raw_loop(callback, ids)
    used = time.process_time() - used
    cpu = meter.read()
    cpu["loop us per POST"] = round(used * 1e6 / n, 1)
    got = await b.receipts(ids)
    return rate_from(got), cpu


async def run(b: Bench) -> list[Row]:
    """Warm-up, then interleaved repetitions."""
    n = 300 if b.smoke else 4000
    reps = 1 if b.smoke else 5
    callback = b.fleet.receiver_root + "/hook"
    if not b.smoke:  # warm-up: first connections, imports, caches
        await relay_rep(b, 500, "warm", callback)
        await baseline_rep(b, 500, "warm", callback)
    rates: dict[str, list[float]] = {"relay": [], "baseline": []}
    cpus: list[str] = []
    for rep in range(reps):
        # Always relay first: its measured window (first to last receipt) ends right before the
        # baseline starts, so each pair sees the same machine; its set-up comes before it.
        for name in ("relay", "baseline"):
            fn = relay_rep if name == "relay" else baseline_rep
            rate, cpu = await fn(b, n, f"{name}{rep}", callback)
            rates[name].append(rate)
            cpus.append(f"{name}: {cpu}")
            b.log(f"delivery {name}: {rate:,.0f}/s cpu {cpu}")
    await b.flush()
    cpu_note = "; ".join(cpus)
    metric = f"deliveries/s, one worker, concurrency {CONCURRENCY}, 2 KB result"
    note = (
        f"{n} deliveries per repetition; CPU % of one core per window (relay: from the first to "
        f"the last receipt; 'queued': runnable, waiting for a core), and CPU per delivery of the "
        f"worker against the raw loop's per POST (signing included): {cpu_note}"
    )
    return [ratio_row("delivery", metric, "deliveries/s", rates, 0.6, note)]
