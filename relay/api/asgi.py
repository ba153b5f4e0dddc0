"""The ASGI entry the server imports: reads Settings from the environment once, builds the app."""

from __future__ import annotations

import os

from litestar import Litestar

from relay.api.app import create_app
from relay.observability import configure_logging
from relay.settings import Settings


def app_from_env() -> Litestar:
    """Factory for the ASGI server (``relay api`` runs it with factory=True)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_format)
    return create_app(settings)
