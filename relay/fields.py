"""The fields a client names a run and a callback with, shared by the API's bodies
(``relay.api.schemas``) and the services that take them (``relay.services.starts``,
``relay.services.registration``). This module does no I/O and imports nothing of the relay.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

# A project name is Intuned's free string, sent percent-encoded as ONE path segment: no "/" or
# "\\", no C0/C1 control characters, not "." or "..".
PROJECT_NAME_PATTERN: Final = r"^(?!\.{1,2}$)[^/\\\x00-\x1f\x7f-\x9f]+$"
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
# Only the scheme: the rest is judged by relay.webhooks.callbacks (which says what is wrong).
CALLBACK_URL_PATTERN: Final = r"^[Hh][Tt][Tt][Pp][Ss]?://"
ProjectName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=PROJECT_NAME_PATTERN,
        description="Intuned project name (one path segment: no '/', no control characters, "
        "not '.' or '..')",
    ),
]
RunId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=RUN_ID_PATTERN,
        description="Intuned run id (nanoid alphabet A-Z a-z 0-9 _ -)",
    ),
]
CallbackUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=CALLBACK_URL_PATTERN,
        description="http(s) URL receiving the webhook; no user info; must not resolve to a "
        "loopback, private or link-local address (unless RELAY_ALLOW_PRIVATE_CALLBACKS)",
    ),
]
# The most a subscription's metadata may take, as compact JSON.
METADATA_MAX_BYTES: Final = 4096
