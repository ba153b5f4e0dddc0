"""What every scenario shares: the fleet, a Redis client, sizes for full/smoke runs, result rows.

A ``Row`` is one line of the results table: a metric of the relay over repetitions, the same
metric of its baseline measured in the same run (interleaved), their ratio and the target.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bench.load import summary
from bench.procs import CLIENT, SECRET, WORKSPACE, Fleet
from relay.model import EVENT_STATUSES, SubscriptionDoc, new_subscription_id, now_ms, run_key
from relay.settings import Settings
from relay.store import Stores


@dataclass
class Row:
    """One metric of one scenario."""

    scenario: str
    metric: str
    unit: str
    relay: list[float]
    baseline: list[float] | None
    target: str
    met: bool | None
    higher_is_better: bool = True
    note: str = ""
    ratio_min: float | None = None  # met when the ratio is at least this ...
    ratio_max: float | None = None  # ... or at most this (when ``met`` is not given)

    def __post_init__(self) -> None:
        ratio = self.ratio
        if self.met is None and ratio is not None:
            if self.ratio_min is not None:
                self.met = ratio >= self.ratio_min
            elif self.ratio_max is not None:
                self.met = ratio <= self.ratio_max

    def as_dict(self) -> dict[str, Any]:
        """JSON form with summaries and the ratio."""
        rel = summary(self.relay)
        base = summary(self.baseline) if self.baseline else None
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "relay": {**rel, "runs": self.relay},
            "baseline": {**base, "runs": self.baseline} if base else None,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }

    @property
    def ratio(self) -> float | None:
        """Relay / baseline: the median of per-repetition ratios when the two were measured in
        adjacent pairs (same count), which cancels drift between repetitions; else of medians."""
        if not self.baseline:
            return None
        if len(self.relay) == len(self.baseline) > 1 and all(self.baseline):
            return statistics.median(r / b for r, b in zip(self.relay, self.baseline, strict=True))
        base = statistics.median(self.baseline)
        return statistics.median(self.relay) / base if base else None


def ratio_row(
    scenario: str,
    metric: str,
    unit: str,
    rates: dict[str, list[float]],
    ratio_min: float,
    note: str,
) -> Row:
    """A row of ``rates["relay"]`` against ``rates["baseline"]``, met at ``ratio_min``."""
    return Row(
        scenario,
        metric,
        unit,
        rates["relay"],
        rates["baseline"],
        f"ratio >= {ratio_min:g}",
        None,
        note=note,
        ratio_min=ratio_min,
    )


@dataclass
class Bench:
    """The shared state of one bench run."""

    fleet: Fleet
    smoke: bool
    redis: Redis = field(init=False)
    store: Stores = field(init=False)
    http: aiohttp.ClientSession = field(init=False)
    notes: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    async def open(self) -> None:
        """Connect to the fleet's Redis; install the bench client's signing secret."""
        self.redis = Redis.from_url(self.fleet.redis.url)
        self.store = Stores.open(
            self.redis,
            Settings(
                redis_url=self.fleet.redis.url,
                intuned_workspace_id=WORKSPACE,
                api_keys={SECRET: CLIENT},
                result_ttl=3600.0,
                max_subscriptions_per_client=10_000_000,
            ),
        )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        await self.flush()

    async def close(self) -> None:
        """Close the clients (the fleet is stopped by the caller)."""
        await self.http.close()
        await self.redis.aclose()

    async def flush(self) -> None:
        """Empty Redis, then put back the bench client's known signing secret."""
        await self.redis.flushdb()
        await self.store.secrets.signing_secret(CLIENT, SECRET)

    def log(self, message: str) -> None:
        """Progress on stdout."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # ---- the fake and the receiver over HTTP ----------------------------------------------

    async def fake_runs(
        self, prefix: str, count: int, script: dict[str, Any], start: int = 0
    ) -> None:
        """Create runs ``prefix{start}..`` in the fake with one script (in chunks)."""
        step = 20_000
        for lo in range(start, start + count, step):
            n = min(step, start + count - lo)
            body = {"prefix": prefix, "count": n, "script": script, "start": lo}
            async with self.http.post(self.fleet.fake_root + "/_bench/runs", json=body) as r:
                assert r.status == 200, await r.text()

    async def fake_info(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """createdAt, polls, firstTerminalAt, firstTerminalWall of runs."""
        url = self.fleet.fake_root + "/_bench/runs/info"
        async with self.http.post(url, json={"runIds": list(run_ids)}) as r:
            info: dict[str, dict[str, Any]] = msgspec.json.decode(await r.read())
            return info

    async def fake_requests(self) -> int:
        """Result requests the fake answered so far."""
        async with self.http.get(self.fleet.fake_root + "/_fake/stats") as r:
            return int((await r.json())["resultRequests"])

    async def receiver_stats(self) -> dict[str, int]:
        """The receiver's counters."""
        async with self.http.get(self.fleet.receiver_root + "/_stats") as r:
            stats: dict[str, int] = await r.json()
            return stats

    async def receiver_reset(self) -> None:
        """Forget what the receiver got."""
        async with self.http.post(self.fleet.receiver_root + "/_reset") as r:
            assert r.status == 204

    async def worker_deferrals(self, port: int) -> dict[str, int]:
        """A worker's ``relay_delivery_deferrals`` so far, by reason (its /metrics on ``port``)."""
        async with self.http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        return {
            s.labels["reason"]: int(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "relay_delivery_deferrals_total"
        }

    async def receipts(self, ids: Sequence[str]) -> dict[str, float]:
        """Wall time of the first receipt of each webhook id."""
        url = self.fleet.receiver_root + "/_receipts"
        async with self.http.post(url, json={"ids": list(ids)}) as r:
            found: dict[str, float] = msgspec.json.decode(await r.read())
            return found

    # ---- registering directly through the store ---------------------------------------------

    def doc(self, run_id: str, callback: str) -> tuple[SubscriptionDoc, str]:
        """A subscription document of the bench client and its run key."""
        doc = SubscriptionDoc(
            id=new_subscription_id(),
            client=CLIENT,
            workspace_id=WORKSPACE,
            project_name="bench-project",
            run_id=run_id,
            callback_url=callback,
            events=EVENT_STATUSES,
            metadata=msgspec.Raw(b"{}"),
            created_at=now_ms(),
        )
        return doc, run_key("bench-project", run_id)

    async def register_many(
        self, run_ids: Sequence[str], callback: str, batch: int = 256
    ) -> list[SubscriptionDoc]:
        """``SubscriptionStore.register`` for each run, ``batch`` concurrent calls at a time."""
        docs: list[SubscriptionDoc] = []
        for lo in range(0, len(run_ids), batch):
            pairs = [self.doc(run_id, callback) for run_id in run_ids[lo : lo + batch]]
            register = self.store.subscriptions.register
            await asyncio.gather(*(register(doc, rk, SECRET) for doc, rk in pairs))
            docs.extend(doc for doc, _ in pairs)
        return docs
