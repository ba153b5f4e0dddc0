"""Per-subscription headers (contract §6): the rules a client's extra webhook headers must meet.

A client may give up to ``MAX_HEADERS`` headers (``MAX_HEADER_BYTES`` in all, names plus
values) that the relay adds to every attempt, e.g. ``Authorization`` for an internal receiver.
Names are RFC 7230 tokens; values are visible ASCII, spaces and tabs (no CR, LF or NUL, so no
header injection). Names the relay or HTTP itself owns are refused: ``Host``, every
``Content-*``, ``Transfer-Encoding``, ``Connection`` and the other hop-by-hop headers,
``User-Agent`` and every ``webhook-*``.

``validate_headers`` is the one check used by registration, start-and-watch, test deliveries and
the operational webhook; ``redacted`` is what any response shows back.

This module is pure computation: it must never do I/O or log a header value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from relay.errors import InvalidInput

MAX_HEADERS: Final = 10
MAX_HEADER_BYTES: Final = 4096
REDACTED: Final = "***"

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and horizontal tab: no CR, LF, NUL or other control characters.
_VALUE: Final = re.compile(r"[\t\x20-\x7e]*")
_FORBIDDEN_NAMES: Final = frozenset(
    {
        "host",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "user-agent",
    }
)
_FORBIDDEN_PREFIXES: Final = ("content-", "proxy-", "webhook-")


def forbidden_reason(name: str) -> str | None:
    """Why the relay refuses to send a header of this name (None when it may be sent)."""
    lower = name.lower()
    if lower in _FORBIDDEN_NAMES or lower.startswith(_FORBIDDEN_PREFIXES):
        return (
            f"header {name!r} may not be set: Host, Content-*, Transfer-Encoding, Connection "
            "and other hop-by-hop headers (Keep-Alive, Proxy-*, TE, Trailer, Upgrade, Expect), "
            "User-Agent and webhook-* are set by the relay"
        )
    return None


def _check_one(name: str, value: str) -> None:
    if _TOKEN.fullmatch(name) is None:
        raise InvalidInput(
            f"headers: {name[:64]!r} is not a valid header name (letters, digits and "
            "!#$%&'*+-.^_`|~ only)"
        )
    reason = forbidden_reason(name)
    if reason is not None:
        raise InvalidInput(f"headers: {reason}")
    if _VALUE.fullmatch(value) is None:
        raise InvalidInput(
            f"headers: the value of {name!r} may hold only visible ASCII characters, spaces "
            "and tabs (no CR, LF, NUL or other control characters)"
        )


def validate_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The client's extra headers, checked; raise ``InvalidInput`` naming the offending header."""
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise InvalidInput(f"headers: {len(headers)} headers given; the limit is {MAX_HEADERS}")
    seen: set[str] = set()
    size = 0
    for name, value in headers.items():
        _check_one(name, value)
        if name.lower() in seen:
            raise InvalidInput(f"headers: {name!r} is given twice (names are case-insensitive)")
        seen.add(name.lower())
        size += len(name) + len(value)
    if size > MAX_HEADER_BYTES:
        raise InvalidInput(
            f"headers: {size} bytes of names and values; the limit is {MAX_HEADER_BYTES} (4 KiB)"
        )
    return dict(headers)


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """The names with every value replaced by ``***`` (what responses show)."""
    return dict.fromkeys(headers, REDACTED)
