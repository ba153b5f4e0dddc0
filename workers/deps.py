"""What a worker process holds while it runs: settings, store sides, clients, metrics, pumps.

Built by ``workers.runner`` at start-up and closed at shutdown; arq jobs reach it via ``ctx``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis

from relay.intuned.client import IntunedClient
from relay.metrics import WorkerMetrics
from relay.model import now_ms
from relay.settings import Settings
from relay.store import ClaimedDelivery, Stores
from relay.webhooks.hostgate import HostGate
from relay.webhooks.sender import WebhookSender


@dataclass
class WorkerDeps:
    """The worker's long-lived collaborators, one of each per process."""

    settings: Settings
    store: Stores
    intuned: IntunedClient
    sender: WebhookSender
    metrics: WorkerMetrics
    gate: HostGate[ClaimedDelivery]
    pumps: dict[str, Any] = field(default_factory=dict)
    # Enqueues operational-webhook events (workers.operational); None in tests without one.
    arq: ArqRedis | None = None
    # This process saw Intuned refuse the key and has not seen an accepted poll since.
    intuned_incident: bool = False

    # This process's wall clock (ms): attempt times and webhook-timestamp only. Leases and due
    # times are Redis's clock, so a skewed clock here can neither steal work nor starve.
    clock: Callable[[], int] = now_ms

    def wake(self, pump: str) -> None:
        """Make a pump look for due work now."""
        target = self.pumps.get(pump)
        if target is not None:
            target.wake()
