"""What the console's overview shows a client: counts by state, deliveries and failures per
minute over the last hour, the oldest pending delivery and the runs being watched.

Every read is bounded: one counter per state, one per-minute counter per minute shown, one
index entry for the oldest pending delivery, one page of watching subscriptions. This module
must never name a Redis key or read another client's data.
"""

from __future__ import annotations

from typing import Final

import msgspec

from relay.model import Subscription, SubState, run_key
from relay.store import Stores, SubscriptionStore

CHART_MINUTES: Final = 60
WATCHED_PAGE: Final = 50
WATCHED_SHOWN: Final = 10


class Minute(msgspec.Struct, frozen=True):
    """Deliveries and failed attempts in one minute (its start, ms)."""

    start: int
    delivered: int
    failed: int


class WatchedRun(msgspec.Struct, frozen=True):
    """A run with watching subscriptions: its last seen Intuned status, how many watch it."""

    project_name: str
    run_id: str
    status: str | None
    subscriptions: int


class Overview(msgspec.Struct, frozen=True):
    """Everything on the overview page."""

    counts: dict[str, int]
    minutes: list[Minute]
    oldest_pending: Subscription | None
    watched_runs: list[WatchedRun]

    @property
    def total(self) -> int:
        """Every subscription the client holds (any state)."""
        return sum(self.counts.values())


async def _watched_runs(store: SubscriptionStore, client: str) -> list[WatchedRun]:
    """The runs of the client's newest watching subscriptions (one page, grouped by run)."""
    page = await store.list_subscriptions(
        client, state=SubState.WATCHING, limit=WATCHED_PAGE, cursor=None
    )
    runs: dict[str, tuple[Subscription, int]] = {}
    for sub in page.items:
        rk = run_key(sub.doc.project_name, sub.doc.run_id)
        first, n = runs.get(rk, (sub, 0))
        runs[rk] = (first, n + 1)
    shown = list(runs.items())[:WATCHED_SHOWN]
    statuses = await store.run_statuses([rk for rk, _ in shown])
    return [
        WatchedRun(
            project_name=sub.doc.project_name,
            run_id=sub.doc.run_id,
            status=status,
            subscriptions=n,
        )
        for (_, (sub, n)), status in zip(shown, statuses, strict=True)
    ]


async def overview(stores: Stores, client: str) -> Overview:
    """The client's overview."""
    subs = stores.subscriptions
    counters = await stores.deliveries.delivery_counters(client, CHART_MINUTES)
    return Overview(
        counts=await subs.count_states(client),
        minutes=[Minute(start=m, delivered=d, failed=f) for m, d, f in counters],
        oldest_pending=await subs.oldest_in_state(client, SubState.DELIVERING),
        watched_runs=await _watched_runs(subs, client),
    )
