"""The push ingress (contract §7): Intuned's sink says a run ended; the relay polls it at once.

A push only makes the run due for a poll now: its body is never read for meaning, trusted or
delivered (anyone who learnt the URL could send any body; the poll asks Intuned itself).
Pushes of one run within ``PUSH_BURST_MS`` of the last push-triggered poll cost no further poll,
and a push for a run no longer watched changes nothing, so duplicates, late pushes and floods
are harmless. This module must never see an HTTP request object or log a secret.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

import structlog

from relay.model import PushOutcome
from relay.policy import PUSH_BURST_MS
from relay.services.starts import secret_matches
from relay.store import StartStore

log = structlog.get_logger("relay.ingress")

# What ``secrets.token_urlsafe(24)`` makes; anything else is unknown without a Redis lookup.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


class PushResult(StrEnum):
    """What a push did."""

    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105 (an outcome, not a secret) 404
    BAD_SECRET = "bad_secret"  # noqa: S105 (an outcome, not a secret) 401
    ACCEPTED = "accepted"  # 2xx, whatever the run's state


async def authenticate(starts: StartStore, token: str, secret: str | None) -> str | PushResult:
    """The run key a push may trigger, or why it may not (no side effect either way)."""
    if _TOKEN_RE.fullmatch(token) is None:
        return PushResult.UNKNOWN_TOKEN
    found = await starts.ingress_token(token)
    if found is None:
        return PushResult.UNKNOWN_TOKEN
    if not secret_matches(secret, found.secret_hash):
        return PushResult.BAD_SECRET
    return found.run_key


async def trigger_poll(starts: StartStore, run_key: str) -> PushResult:
    """Make an authenticated push's run due for a poll now (once per burst; the script wakes
    the workers' poll pumps)."""
    outcome = await starts.pushed(run_key, PUSH_BURST_MS)
    # A flood of pushes must not become a flood of log lines: only the one that polls is info.
    (log.info if outcome is PushOutcome.TRIGGERED else log.debug)(
        "push_received", run_key=run_key, outcome=outcome
    )
    return PushResult.ACCEPTED
