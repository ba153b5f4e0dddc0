"""What a worker process holds while it runs: settings, store, clients, metrics, pumps.

Built by ``workers.runner`` at start-up and closed at shutdown; arq jobs reach it via ``ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relay.intuned.client import IntunedClient
from relay.metrics import WorkerMetrics
from relay.settings import Settings
from relay.store import Store
from relay.store_starts import StartStore
from relay.webhooks.sender import WebhookSender


@dataclass
class WorkerDeps:
    """The worker's long-lived collaborators, one of each per process."""

    settings: Settings
    store: Store
    intuned: IntunedClient
    sender: WebhookSender
    metrics: WorkerMetrics
    starts: StartStore
    pumps: dict[str, Any] = field(default_factory=dict)

    @property
    def poll_lease_ms(self) -> int:
        """How long a claimed poll stays with this worker before others may take it."""
        return int((self.settings.intuned_timeout * 2 + 5) * 1000)

    @property
    def delivery_lease_ms(self) -> int:
        """How long a claimed delivery stays with this worker before others may take it."""
        return int((self.settings.delivery_timeout * 2 + 5) * 1000)

    def wake(self, pump: str) -> None:
        """Make a pump look for due work now."""
        target = self.pumps.get(pump)
        if target is not None:
            target.wake()
