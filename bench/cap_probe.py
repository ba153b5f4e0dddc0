"""The delivery row's relay side at a per-host cap: deliveries/s, POSTs in flight, script calls.

    uv run python -m bench.cap_probe                  # cap 8 (the default), 2 reps of 4,000
    uv run python -m bench.cap_probe --cap 64 --reps 3 --count 4000

The delivery row (``bench/scenarios/delivery.py``) runs its worker with the per-host cap equal
to its concurrency (64); a deployment with one receiver runs at the default cap (8). This runs
the row's relay side with the same set-up (N subscriptions due at once, one worker at its default
concurrency, the bench's verifying receiver) at ``--cap`` and prints, per repetition, over the
rate's own window (first to last receipt):

* deliveries/s, counted at the receiver as the row counts them;
* POSTs in flight on average, by Little's law: the rate times the mean POST duration (each
  attempt's ``duration_ms`` from its log: the sender's own timer, from its pool slot to the
  answer), so it counts only POSTs, not attempts waiting for their record;
* Redis script calls (``EVALSHA`` in ``INFO commandstats``) per delivery from the wake-up to the
  last receipt: claims, record groups, deferrals (fewer: bigger groups);
* the worker's share of a core, and the share it waited for one (``bench.procs.CpuTrace``);
* deliveries the per-host gate put back for later (``relay_delivery_deferrals``, its /metrics).

A warm-up repetition of 500 comes first. Compare trees by running it in each, interleaved
(A B A B ...): each run uses its own tree's worker. Every child is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import statistics

import msgspec
import uvloop

from bench.common import Bench
from bench.procs import CpuTrace, Fleet
from bench.scenarios.delivery import parked_due, rate_from, release_due, wait_receipts
from relay.embedded_redis import free_port
from relay.model import ATTEMPT_DECODER, EventType
from relay.store import keys
from relay.webhooks.signing import webhook_id


class Rep(msgspec.Struct, frozen=True):
    """One repetition's figures."""

    rate: float  # deliveries/s at the receiver
    post_ms: float  # mean POST duration
    in_flight: float  # POSTs in flight on average (rate x mean POST duration)
    calls_per_delivery: float  # EVALSHA calls while draining, per delivery
    worker_cpu: float  # % of a core over the rate's window
    worker_queued: float  # % of the window runnable but waiting for a core
    deferred: int  # deliveries the gate put back for later


async def evalsha_calls(b: Bench) -> int:
    """Script calls Redis has served so far."""
    stats = await b.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def rep(b: Bench, n: int, tag: str, cap: int) -> Rep:
    """One repetition: N due at once, one worker at ``cap`` per host drains them."""
    callback = b.fleet.receiver_root + "/hook"
    docs, due = await parked_due(b, [f"cap-{tag}-{i}" for i in range(n)], callback)
    port = free_port()
    worker = b.fleet.worker(
        RELAY_MAX_IN_FLIGHT_PER_HOST=str(cap), RELAY_WORKER_METRICS_PORT=str(port)
    )
    trace = CpuTrace({"worker": worker.pid})
    calls = await evalsha_calls(b)
    await release_due(b, due)
    ids = [webhook_id(d.id, EventType.COMPLETED) for d in docs]
    try:
        got = await wait_receipts(b, ids, timeout=60 + n / 50)
        calls = await evalsha_calls(b) - calls
        deferred = sum((await b.worker_deferrals(port)).values())
    finally:
        trace.close()
        b.fleet.stop_child(worker)
    times = sorted(got.values()) or [0.0]
    cpu = trace.share(times[0], times[-1])
    pipe = b.redis.pipeline(transaction=False)
    for d in docs:
        pipe.lrange(keys.attempts(d.id), 0, -1)
    logs = await pipe.execute()
    durations = [ATTEMPT_DECODER.decode(a).duration_ms for log in logs for a in log]
    rate = rate_from(got)
    post_ms = statistics.fmean(durations) if durations else 0.0
    if len(got) < n or len(durations) != n:
        b.notes.append(f"{tag}: {len(got)}/{n} received, {len(durations)} attempts")
    return Rep(
        rate=rate,
        post_ms=post_ms,
        in_flight=rate * post_ms / 1000,
        calls_per_delivery=calls / max(1, len(got)),
        worker_cpu=cpu.get("worker", 0.0),
        worker_queued=cpu.get("worker queued", 0.0),
        deferred=deferred,
    )


async def main_async(cap: int, count: int, reps: int) -> None:
    """Warm up, then ``reps`` repetitions; one line each."""
    fleet = Fleet()
    b = Bench(fleet, smoke=False)
    try:
        fleet.start()
        await b.open()
        await rep(b, 500, "warm", cap)
        for i in range(reps):
            r = await rep(b, count, f"r{i}", cap)
            print(
                f"cap {cap} rep {i}: {r.rate:,.0f}/s, POST {r.post_ms:.2f} ms, "
                f"{r.in_flight:.1f} POSTs in flight, {r.calls_per_delivery:.3f} script calls "
                f"per delivery, worker {r.worker_cpu:.0f} % (queued {r.worker_queued:.0f} %), "
                f"{r.deferred} deferred",
                flush=True,
            )
        for note in b.notes:
            print("note:", note)
        await b.close()
    finally:
        fleet.stop()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=8, help="RELAY_MAX_IN_FLIGHT_PER_HOST")
    parser.add_argument("--count", type=int, default=4000, help="deliveries per repetition")
    parser.add_argument("--reps", type=int, default=2, help="repetitions after the warm-up")
    args = parser.parse_args()
    uvloop.run(main_async(args.cap, args.count, args.reps))


if __name__ == "__main__":
    main()
