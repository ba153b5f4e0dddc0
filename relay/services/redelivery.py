"""Bulk redeliver (contract §6): every subscription of a client in one final state that matches a
filter starts a new attempt series, exactly as ``POST /v1/subscriptions/{id}/redeliver`` does.

The work is cut into batches of the client's per-state index (``BATCH`` entries per Redis call,
filter and redeliver in one script), so no single call grows with the client's data. A started
subscription leaves the index; the next batch goes on after the entries kept. A subscription
that changes state while the walk runs may be missed (run it again).

This module must never know HTTP request objects.
"""

from __future__ import annotations

from typing import Final

from relay.model import SubState
from relay.store import ControlStore, RedeliverQuery

BATCH: Final = 200


def query_for(
    state: SubState,
    *,
    run_id: str | None = None,
    host: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> RedeliverQuery:
    """The store's query for a filter (the host compared lower-case, without brackets)."""
    return RedeliverQuery(
        state=state,
        run_id=run_id,
        host=host.lower().strip("[]") if host else None,
        since_ms=since_ms,
        until_ms=until_ms,
    )


async def redeliver_matching(
    controls: ControlStore, client: str, query: RedeliverQuery, batch: int = BATCH
) -> int:
    """Redeliver every match, batch by batch; returns how many started a new series."""
    count, offset = 0, 0
    while True:
        step = await controls.redeliver_batch(client, query, offset, batch)
        count += step.count
        if step.done:
            return count
        offset = step.offset
