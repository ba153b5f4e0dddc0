"""How the console shows values: times, durations, shortened event bodies and messages.

Pure functions used as Jinja filters and by the page handlers. This module must never do I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

RESULT_SHOWN: Final = 400  # characters of an event's data.result shown on the page
EXCERPT_SHOWN: Final = 120
_CUT: Final = "relay-console-cut-9f1c2e7a"  # stands in for the cut result while formatting

# Messages shown after an action (the redirect names one by its code; nothing else is echoed).
NOTICES: Final = {
    "redelivered": "Redelivery started: a fresh attempt series with the same webhook-id.",
    "deleted": "Subscription deleted: no further deliveries.",
    "rotated": "Signing secret rotated: for 24 h webhooks carry both the new and the old "
    "signature.",
    "signed-out": "You are signed out.",
}


def when(ms: int | None) -> str:
    """``2026-11-29 19:55:03 UTC`` ('—' for none)."""
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ms: int | None) -> str:
    """RFC 3339 for a ``<time datetime>`` attribute ('' for none)."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(ms: float) -> str:
    """``12 ms`` or ``1.2 s``."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def excerpt(text: str | None, limit: int = EXCERPT_SHOWN) -> str:
    """The first ``limit`` characters of ``text``, with an ellipsis when cut."""
    if not text:
        return ""
    return text if len(text) <= limit else text[:limit] + "…"


def shortened_event(body: bytes | None) -> str | None:
    """The event body as indented JSON, its ``data.result`` cut to ``RESULT_SHOWN`` characters."""
    if body is None:
        return None
    try:
        event: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return excerpt(body.decode(errors="replace"), 2000)
    data = event.get("data") if isinstance(event, dict) else None
    cut: str | None = None
    if isinstance(data, dict) and "result" in data:
        text = msgspec.json.encode(data["result"]).decode()
        if len(text) > RESULT_SHOWN:
            cut = f"{text[:RESULT_SHOWN]}… ({len(text)} characters in all)"
            data["result"] = _CUT
    shown = msgspec.json.format(msgspec.json.encode(event), indent=2).decode()
    # The cut result is shown as the JSON text it starts with, not as an escaped string.
    return shown.replace(f'"{_CUT}"', cut) if cut is not None else shown
