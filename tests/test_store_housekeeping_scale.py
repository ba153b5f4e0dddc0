"""Sweep and prune over a Redis full of keys that are not the relay's: every slice walks only the
relay's own indexes, so the slices (what each one sees, restores and prunes) are the same with
0, 50,000 or (slow set) 1,000,000 unrelated keys, and Redis's SLOWLOG shows no script that
grows with them (tests/support/slowlog.py says how it is judged). Slice durations are printed for
bench/NOTES.md."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.asyncio import Redis

from relay.model import SubscriptionDoc, run_key
from relay.store import Stores, keys
from tests.support.api_helpers import make_doc
from tests.support.slowlog import WORK_BOUND, over_the_line, script_work, slowlog
from tests.support.store_helpers import finish_run, open_stores

WATCHING = 1_200  # runs watched, their poll due entries lost
DELIVERING = 700  # subscriptions delivering, their due entries lost
EXPIRED = 1_500  # canceled subscriptions whose keys expired: index entries to prune
WS = "ws-hk"


def doc(run_id: str) -> SubscriptionDoc:
    return make_doc(
        "alpha", "p", run_id, 1_000, workspace_id=WS, callback_url="http://127.0.0.1:9/ok"
    )


async def register(store: Stores, docs: list[SubscriptionDoc]) -> None:
    for lo in range(0, len(docs), 200):
        await asyncio.gather(
            *(
                store.subscriptions.register(d, run_key("p", d.run_id), "whsec_dGVzdA==")
                for d in docs[lo : lo + 200]
            )
        )


def add_unrelated(r: redis.Redis, n: int) -> None:
    """``n`` small string keys that are not the relay's (MSET in pipelined chunks)."""
    step = 10_000
    with r.pipeline(transaction=False) as pipe:
        for lo in range(0, n, step):
            pipe.mset({f"other:{i}": "x" for i in range(lo, min(n, lo + step))})
            if len(pipe) >= 10:
                pipe.execute()
        pipe.execute()


async def relay_state(store: Stores, redis_client: Redis) -> None:
    """Watching runs, delivering subscriptions and expired ones, with every due entry lost."""
    watching = [doc(f"w{i}") for i in range(WATCHING)]
    delivering = [doc(f"d{i}") for i in range(DELIVERING)]
    gone = [doc(f"x{i}") for i in range(EXPIRED)]
    await register(store, watching + delivering + gone)
    for lo in range(0, DELIVERING, 100):
        await asyncio.gather(
            *(
                finish_run(store, run_key("p", d.run_id), "completed", b"{}")
                for d in delivering[lo : lo + 100]
            )
        )
    for lo in range(0, EXPIRED, 200):
        await asyncio.gather(
            *(store.subscriptions.cancel(d.id, "alpha") for d in gone[lo : lo + 200])
        )
    await redis_client.delete(keys.DUE_POLL, keys.DUE_DELIVERY)


@pytest.mark.parametrize("unrelated", [0, 50_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
async def test_sweep_and_prune_slices_do_not_depend_on_unrelated_keys(
    unrelated: int, redis_client: Redis, redis_sync: redis.Redis, redis_url: str
) -> None:
    store = open_stores(redis_client, result_ttl=1.0)  # canceled ones expire after 1 s
    t0 = time.perf_counter()
    add_unrelated(redis_sync, unrelated)
    loaded = time.perf_counter() - t0
    await relay_state(store, redis_client)
    await asyncio.sleep(1.2)  # the canceled subscriptions' keys expire
    hk = store.housekeeping
    sweeps, prunes, durations = [], [], []
    with script_work(redis_url) as work, slowlog(redis_sync) as entries:
        watching_done = delivering_done = False
        while not (watching_done and delivering_done):  # each walk through once
            t = time.perf_counter()
            sweeps.append(s := await hk.sweep_slice())
            durations.append(time.perf_counter() - t)
            watching_done = watching_done or s.watching_done
            delivering_done = delivering_done or s.delivering_done
        while not prunes or prunes[-1].seen:
            t = time.perf_counter()
            prunes.append(await hk.prune_slice())
            durations.append(time.perf_counter() - t)
    # The same slices whatever else Redis holds: 125 watching + 125 delivering a sweep slice,
    # 200 expiry entries a prune slice.
    assert [(s.seen, s.polls, s.deliveries) for s in sweeps] == [(250, 125, 125)] * 5 + [
        (200, 125, 75),  # the delivering walk ends here and starts over in the next slice
        (250, 125, 0),
        (250, 125, 0),
        (250, 125, 0),
        (200, 75, 0),
    ]
    assert [(p.seen, p.pruned) for p in prunes] == [(200, 200)] * 7 + [(100, 100), (0, 0)]
    assert await redis_client.zcard(keys.DUE_POLL) == WATCHING
    assert await redis_client.zcard(keys.DUE_DELIVERY) == DELIVERING
    assert await redis_client.dbsize() >= unrelated
    print(
        f"\n{unrelated:,} unrelated keys (loaded in {loaded:.1f} s): {len(sweeps)} sweep + "
        f"{len(prunes)} prune slices, longest {max(durations) * 1000:.1f} ms, total "
        f"{sum(durations) * 1000:.0f} ms"
    )
    slow = over_the_line(entries)
    print(f"most commands in one slice: {work.most} ({work.heaviest!r})")
    assert work.calls >= len(sweeps) + len(prunes) and 0 < work.most <= WORK_BOUND
    if unrelated > 50_000:  # the slow set runs alone, on a quiet machine: the 20 ms line holds
        assert slow == [], slow[:5]
