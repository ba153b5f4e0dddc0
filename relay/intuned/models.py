"""msgspec models of the Intuned Run API (intuned-api.md §2-§3) and the client's typed outcomes.

Lenient where Intuned may add values: ``status``, ``error.code``, ``error.category`` and
``reason.type`` are plain strings (an unknown status is simply non-terminal) and unknown fields
are ignored here. The raw JSON of each field is kept separately (``RawFields``) so the webhook can
pass Intuned's body through byte for byte. This module does no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

import msgspec

from relay.model import TERMINAL_STATUSES, RunStatus

KNOWN_STATUSES: Final = frozenset(RunStatus)

# Intuned's top-level fields, each value kept as the exact bytes Intuned sent.
RawFields = dict[str, msgspec.Raw]


class RunError(msgspec.Struct, omit_defaults=True):
    """``error`` of a failed run. ``category`` is required by Intuned but tolerated missing."""

    message: str = ""
    category: str | None = None
    code: str | None = None
    retirable: bool = False
    doc_url: str | None = None
    correlation_id: str | None = None
    details: Any = None


class RunReason(msgspec.Struct, omit_defaults=True):
    """``reason`` of a canceled (or job-terminated) run."""

    type: str
    message: str = ""
    doc_url: str | None = None
    details: Any = None


class ExtendedPayload(msgspec.Struct, omit_defaults=True):
    """One entry of ``extendedPayloads``."""

    api: str
    runId: str | None = None  # Intuned's wire name (camelCase)
    parameters: dict[str, Any] | None = None


class RunResult(msgspec.Struct, rename="camel", omit_defaults=True):
    """The result envelope of ``GET .../run/{runId}/result`` (same shape for every status)."""

    run_id: str
    status: str
    result: Any = msgspec.UNSET
    extended_payloads: list[ExtendedPayload] | msgspec.UnsetType | None = msgspec.UNSET
    error: RunError | msgspec.UnsetType | None = msgspec.UNSET
    message: str | msgspec.UnsetType | None = msgspec.UNSET
    reason: RunReason | msgspec.UnsetType | None = msgspec.UNSET

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and canceled; unknown statuses are not terminal."""
        return self.status in TERMINAL_STATUSES


class StartResponse(msgspec.Struct, rename="camel"):
    """Answer of ``POST .../run/start``: ``{"runId": ..., "status": "pending"}``."""

    run_id: str
    status: str


# ---- the client's outcomes: every call ends in exactly one of these ----------------------------


class Fetched(msgspec.Struct, frozen=True):
    """A 200 with a well-formed envelope. ``raw`` is the exact body (stored as it is; the event
    body takes its top-level fields from it, ``RAW_FIELDS_DECODER``)."""

    result: RunResult
    raw: bytes


class NotFoundOutcome(msgspec.Struct, frozen=True):
    """404: the run (or project) is unknown to Intuned, perhaps not visible yet."""

    detail: str = ""


class Unauthorized(msgspec.Struct, frozen=True):
    """401/403: the API key is wrong or lacks access to the workspace."""

    status_code: int
    detail: str = ""


class RateLimited(msgspec.Struct, frozen=True):
    """429; ``retry_after`` in seconds when Intuned sent a usable Retry-After."""

    retry_after: float | None = None


class TransientKind(StrEnum):
    """Why a call is worth retrying (``Transient.kind``, logged as ``kind``)."""

    HTTP_5XX = "http_5xx"
    HTTP_STATUS = "http_status"  # any other status the call does not expect
    TIMEOUT = "timeout"  # connect, read, or the total
    CONNECTION = "connection"  # refused, reset or closed
    BAD_BODY = "bad_body"  # a 2xx that is no envelope, or a body that does not decompress


class Transient(msgspec.Struct, frozen=True):
    """Anything worth retrying: 5xx, other unexpected statuses, timeouts, resets, garbage 2xx."""

    kind: TransientKind
    status_code: int | None = None
    detail: str = ""


PollOutcome = Fetched | NotFoundOutcome | Unauthorized | RateLimited | Transient

RAW_FIELDS_DECODER: Final = msgspec.json.Decoder(RawFields)
RESULT_DECODER: Final = msgspec.json.Decoder(RunResult)
START_DECODER: Final = msgspec.json.Decoder(StartResponse)
