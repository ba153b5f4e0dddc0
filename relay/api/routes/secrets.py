"""``/v1/signing-secret``: the client's Standard Webhooks secret, and its rotation.

A client only ever sees its own secret; it is never logged.
"""

from __future__ import annotations

from litestar import get, post
from litestar.status_codes import HTTP_200_OK

from relay.api.auth import ClientController
from relay.api.deps import ClientName, StoreDep
from relay.api.responses import errors
from relay.api.schemas import SecretOut
from relay.webhooks.signing import new_secret


class SecretController(ClientController):
    """The authenticated client's signing secret."""

    path = "/v1/signing-secret"
    tags = ["signing"]

    @get(
        "/",
        summary="The current signing secret (created on first use)",
        responses=errors(401, 503),
    )
    async def read(self, client: ClientName, store: StoreDep) -> SecretOut:
        return SecretOut(secret=await store.secrets.signing_secret(client, new_secret()))

    @post(
        "/rotate",
        status_code=HTTP_200_OK,
        summary="A new secret; for 24 h webhooks carry signatures with both new and old",
        responses=errors(401, 503),
    )
    async def rotate(self, client: ClientName, store: StoreDep) -> SecretOut:
        await store.secrets.signing_secret(client, new_secret())  # make sure an old one exists
        return SecretOut(secret=await store.secrets.rotate_secret(client, new_secret()))
