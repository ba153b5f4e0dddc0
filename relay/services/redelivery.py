"""Bulk redeliver (contract §6): every subscription of a client in one final state that matches a
filter starts a new attempt series, exactly as ``POST /v1/subscriptions/{id}/redeliver`` does.

The work is cut into batches read from the client's per-state index with a cursor, so no single
Redis call grows with the client's data: one call reads up to ``BATCH`` index entries with the
fields the filter needs, the filter is applied here (pure), and one script call redelivers the
matches (each re-checked there, as the single redeliver checks it).

This module must never know HTTP request objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec
from yarl import URL

from relay.model import SubState

BATCH: Final = 200


class RedeliverFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which subscriptions: a state, and optionally a run id, a callback host, a time window."""

    state: SubState
    run_id: str | None = None
    callback_host: str | None = None
    since_ms: int | None = None  # updatedAt >= since
    until_ms: int | None = None  # updatedAt <= until


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One index entry with the fields the filter reads."""

    subscription_id: str
    run_id: str
    callback_url: str
    updated_at: int


class CandidatePage(msgspec.Struct, frozen=True, kw_only=True):
    """One batch of a client's subscriptions in a state, and the cursor after it (None: done)."""

    items: list[Candidate]
    cursor: str | None


class RedeliverStore(Protocol):
    """The store calls a bulk redeliver makes."""

    async def state_page(
        self, client: str, state: SubState, cursor: str | None, limit: int
    ) -> CandidatePage:
        """Up to ``limit`` of the client's subscriptions in ``state``, oldest first."""
        ...

    async def redeliver_many(self, client: str, sids: Sequence[str], now: int) -> int:
        """Start a new series for each (as the single redeliver); how many started."""
        ...


def _host(url: str) -> str:
    try:
        return (URL(url).host or "").lower().strip("[]")
    except ValueError:
        return ""


def matches(flt: RedeliverFilter, c: Candidate) -> bool:
    """True when the candidate passes every given part of the filter."""
    if flt.run_id is not None and c.run_id != flt.run_id:
        return False
    if flt.since_ms is not None and c.updated_at < flt.since_ms:
        return False
    if flt.until_ms is not None and c.updated_at > flt.until_ms:
        return False
    return flt.callback_host is None or _host(c.callback_url) == flt.callback_host.lower().strip(
        "[]"
    )


async def redeliver_matching(
    store: RedeliverStore, client: str, flt: RedeliverFilter, now: int
) -> int:
    """Redeliver every match, batch by batch; returns how many started a new series."""
    count, cursor = 0, None
    while True:
        page = await store.state_page(client, flt.state, cursor, BATCH)
        chosen = [c.subscription_id for c in page.items if matches(flt, c)]
        if chosen:
            count += await store.redeliver_many(client, chosen, now)
        if page.cursor is None:
            return count
        cursor = page.cursor
