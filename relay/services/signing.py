"""A client's signing secret: read (created on first use) and rotate.

This module must never log a secret or return another client's.
"""

from __future__ import annotations

from relay.store import SecretStore
from relay.webhooks.signing import new_secret


async def current_secret(store: SecretStore, client: str) -> str:
    """The client's current signing secret, created on first use."""
    return await store.signing_secret(client, new_secret())


async def rotate_secret(store: SecretStore, client: str) -> str:
    """A new current secret; the previous one keeps signing for 24 h."""
    await store.signing_secret(client, new_secret())  # make sure an old one exists
    return await store.rotate_secret(client, new_secret())
