"""What the API's handlers are given: settings, the store and the arq pool (from app state).

``callback_lookup`` is the one seam at the network edge: tests put a resolver in
``app.state.callback_lookup`` so registering a callback URL never depends on real DNS.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from litestar.datastructures import State
from litestar.di import NamedDependency

from relay.settings import Settings
from relay.store import Stores
from relay.webhooks.callbacks import Lookup


async def provide_store(state: State) -> Stores:
    """The process's store sides (opened in the lifespan)."""
    store: Stores = state.store
    return store


async def provide_settings(state: State) -> Settings:
    """The process's Settings."""
    settings: Settings = state.settings
    return settings


async def provide_arq(state: State) -> ArqRedis:
    """The arq pool used to enqueue immediate work."""
    pool: ArqRedis = state.arq
    return pool


def callback_lookup(state: State) -> Lookup | None:
    """The resolver for the SSRF check of callback URLs (None: the system resolver)."""
    lookup: Lookup | None = state.get("callback_lookup")
    return lookup


ClientName = NamedDependency[str]
StoreDep = NamedDependency[Stores]
SettingsDep = NamedDependency[Settings]
ArqDep = NamedDependency[ArqRedis]
