"""What the API's handlers are given: settings, the store and the arq pool (from app state)."""

from __future__ import annotations

from arq.connections import ArqRedis
from litestar.datastructures import State
from litestar.di import NamedDependency

from relay.settings import Settings
from relay.store import Store


async def provide_store(state: State) -> Store:
    """The process's Store (opened in the lifespan)."""
    store: Store = state.store
    return store


async def provide_settings(state: State) -> Settings:
    """The process's Settings."""
    settings: Settings = state.settings
    return settings


async def provide_arq(state: State) -> ArqRedis:
    """The arq pool used to enqueue immediate work."""
    pool: ArqRedis = state.arq
    return pool


ClientName = NamedDependency[str]
StoreDep = NamedDependency[Store]
SettingsDep = NamedDependency[Settings]
ArqDep = NamedDependency[ArqRedis]
