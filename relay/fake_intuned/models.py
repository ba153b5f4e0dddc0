"""Data of the bundled fake Intuned: run scripts, faults, config, inspection records, bodies.

Every struct here crosses the fake's control API as camelCase JSON (``POST /_fake/runs`` takes a
``RunScript``, ``POST /_fake/faults`` a ``Fault``...) and is also the Python argument of the same
operation. Bodies follow intuned-api.md §3/§4/§8: absent fields are omitted, never ``null``.
This module does no I/O; only the fake and its users (tests, benchmarks, the demo) import it, never
the relay's polling or delivery code.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Final, Literal

import msgspec

DEFAULT_PREFIX: Final = "/api/v1/workspace"
NANOID_ALPHABET: Final = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"

UNKNOWN_VALUES: Final = {
    "status": "x-fake-unknown-status",
    "error.code": "x-fake-unknown-code",
    "error.category": "x-fake-unknown-category",
    "reason.type": "x-fake-unknown-reason",
}

Outcome = Literal["completed", "failed", "canceled"]
FaultKind = Literal[
    "error_500",  # 500 JSON internal-server-error / infrastructure / retirable
    "gateway",  # 502/503/504 (``status``) with an HTML or text body
    "slow",  # wait ``delay_ms`` and then answer normally
    "reset",  # abort the connection without any response
    "malformed_json",  # 200 with a body that is not JSON
    "wrong_shape",  # 200 JSON of the wrong shape (``shape``)
    "rate_limited",  # 429, with ``retry_after`` as the Retry-After header when set
    "unknown_enum",  # an unknown value for ``field`` (status answers; the others rewrite)
    "big_result",  # a completed answer whose result is ``size_bytes`` of JSON
    "hang",  # start only: create the run, then answer after ``delay_ms`` (default 30 s)
    "refuse",  # start only: a 4xx (``status``, default 400) with Intuned's error body
]
PRE_ANSWER_KINDS: Final = frozenset(
    {"error_500", "gateway", "slow", "reset", "malformed_json", "wrong_shape", "rate_limited"}
)
START_ONLY_KINDS: Final = frozenset({"hang", "refuse"})
REFUSAL_CODES: Final = {
    400: "bad-request",
    402: "insufficient-credits",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "unprocessable-entity",
}


class RunScript(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """How one run evolves: pending, then started, then a terminal outcome that never changes.

    A run answers ``pending`` while fewer than ``pending_polls`` polls were answered pending OR
    less than ``pending_seconds`` passed since creation; then ``started`` while fewer than
    ``started_polls`` polls were answered started OR less than ``pending_seconds +
    started_seconds`` passed; then ``outcome``. ``None`` fields are omitted from the envelope;
    a failed/canceled run without ``error``/``reason`` gets a documented default one.
    ``flip_back_after_terminal`` (a test switch) makes the run answer ``started`` for
    ``flip_back_polls`` polls right after its first terminal answer, then terminal again.
    """

    pending_polls: int = 0
    started_polls: int = 0
    pending_seconds: float = 0.0
    started_seconds: float = 0.0
    outcome: Outcome = "completed"
    result: Any = None
    error: dict[str, Any] | None = None
    reason: dict[str, Any] | None = None
    message: str | None = None
    extended_payloads: list[dict[str, Any]] | None = None
    flip_back_after_terminal: bool = False
    flip_back_polls: int = 1


class Fault(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """One injected fault, for the next ``times`` applicable requests (``None``: always).

    ``run_id`` limits it to that run's result requests; otherwise it is global and ``endpoint``
    says where it applies. Rewrite faults (``unknown_enum`` of error/reason fields,
    ``big_result``) wait until an answer carries the field they rewrite.
    """

    kind: FaultKind
    times: int | None = 1
    run_id: str | None = None
    endpoint: Literal["result", "start", "any"] = "result"
    status: int = 502
    body_format: Literal["html", "text"] = "html"
    delay_ms: int = 0
    shape: Literal["list", "no_status", "no_run_id", "wrong_types", "string"] = "list"
    field: Literal["status", "error.code", "error.category", "reason.type"] = "status"
    value: str | None = None
    size_bytes: int = 2_000_000
    retry_after: str | None = None


class PushFaults(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Fault switches of the sink push of one run (``POST /_fake/runs/{runId}/push-faults``).

    ``lost``: never sent. ``delay_seconds``: sent that long after the run ended.
    ``duplicates``: that many extra copies after the first. ``early_seconds``: sent when the run
    ends, but the result endpoint keeps answering ``started`` for that long.
    """

    lost: bool = False
    delay_seconds: float = 0.0
    duplicates: int = 0
    early_seconds: float = 0.0


class PushRecord(msgspec.Struct, rename="camel", frozen=True):
    """One sink push attempt (or a push not sent), as ``GET /_fake/pushes`` lists it."""

    run_id: str
    url: str
    copy: int  # 0 for the push itself, 1.. for duplicates
    attempt: int  # 1-based within one copy
    wall: float
    status_code: int | None  # None: not sent, or no HTTP answer
    note: str  # "sent", "error:<kind>", "gave-up" (after the last attempt), "lost",
    # "skipped:skipOnFail", "skipped:apisToSend", "refused:not-loopback"


class RateLimitConfig(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """The documented "20 requests per minute per URI path", counted on the fake's clock.

    ``scope="path"`` counts each concrete path (each run's result URL) separately;
    ``"template"`` counts all requests of one route together. Answers over the limit do not
    count. ``retry_after`` adds a ``Retry-After`` header (whole seconds until a slot frees up).
    """

    enabled: bool = True
    limit: int = 20
    window_seconds: float = 60.0
    scope: Literal["path", "template"] = "path"
    retry_after: bool = False
    body: str | None = None  # None: the default JSON too-many-requests body
    content_type: str = "application/json"


class FakeConfig(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Switches of the fake that a test may change at any time (``POST /_fake/config``)."""

    start_status: int = 201
    wrong_workspace_status: Literal[401, 403] = 401
    retention_seconds: float | None = None
    default_script: RunScript = msgspec.field(
        default_factory=lambda: RunScript(pending_polls=1, started_polls=1)
    )
    rate_limit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    known_projects: list[str] | None = None  # None: every project name exists
    push_faults: PushFaults = msgspec.field(default_factory=PushFaults)  # for runs started later
    sink_attempts: int = 5  # attempts per push copy (non-2xx or no answer: retried)
    sink_backoff_seconds: float = 0.2  # first retry delay, doubled each time
    sink_timeout_seconds: float = 5.0  # per attempt
    sink_allow_remote: bool = False  # push only to loopback URLs unless True


class PollRecord(msgspec.Struct, rename="camel", frozen=True):
    """One result request of a run: when (fake clock and wall clock), what was answered."""

    at: float
    wall: float
    http_status: int
    status: str | None  # the run status in the body, when there was one
    note: str  # "answer", "fault:<kind>", "rate-limited", "expired"


class RunStats(msgspec.Struct, rename="camel", kw_only=True):
    """What the fake knows about one run: counters, the poll log, the first terminal answer."""

    run_id: str
    project_name: str
    workspace_id: str
    created_at: float
    polls: int
    by_http_status: dict[int, int]
    by_run_status: dict[str, int]
    first_terminal_at: float | None
    first_terminal_wall: float | None
    terminal_status: str | None
    ended_at: float | None  # fake clock: when the lifecycle ended (the push moment)
    ended_wall: float | None
    sink: dict[str, Any] | None
    log: list[PollRecord]


class FakeStats(msgspec.Struct, rename="camel", kw_only=True):
    """Counters over every request to the Intuned routes (known runs or not)."""

    result_requests: int
    start_requests: int
    by_http_status: dict[int, int]
    runs: int


class CreateRun(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_fake/runs``."""

    script: RunScript | None = None
    run_id: str | None = None
    project_name: str = "demo-project"
    workspace_id: str | None = None
    api: str = "demo-api"
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    sink: dict[str, Any] | None = None  # a webhook sink, as in a start body
    push_faults: PushFaults | None = None  # None: the config's push_faults


def new_run_id() -> str:
    """A 21-character nanoid from the default alphabet, like Intuned's run ids."""
    return "".join(secrets.choice(NANOID_ALPHABET) for _ in range(21))


def error_body(
    code: str,
    message: str,
    *,
    category: str = "user",
    retirable: bool = False,
    details: Any = None,
) -> bytes:
    """The standard HTTP error body of Intuned's API (intuned-api.md §4), camelCase id."""
    body: dict[str, Any] = {"code": code, "category": category, "message": message}
    body["retirable"] = retirable
    if details is not None:
        body["details"] = details
    body["correlationId"] = str(uuid.uuid4())
    return msgspec.json.encode(body)


def default_error() -> dict[str, Any]:
    """The ``error`` of a failed run whose script names none."""
    return {
        "message": "The automation raised an exception.",
        "category": "execution",
        "code": "script-execution-exception",
        "retirable": False,
        "doc_url": "https://docs.intunedhq.com/docs/support/errors#script-execution-exception",
        "correlation_id": str(uuid.uuid4()),
    }


def default_reason() -> dict[str, Any]:
    """The ``reason`` of a canceled run whose script names none."""
    return {"type": "cancelled-user-action", "message": "The run was canceled by a user."}


def envelope(run_id: str, status: str, script: RunScript, fallback_result: Any) -> dict[str, Any]:
    """The result envelope for ``status``: only the fields that status carries, none null."""
    body: dict[str, Any] = {"runId": run_id, "status": status}
    if status == "completed":
        result = script.result if script.result is not None else fallback_result
        if result is not None:
            body["result"] = result
        if script.extended_payloads is not None:
            body["extendedPayloads"] = script.extended_payloads
    elif status == "failed" and script.error is not None:
        body["error"] = script.error
    elif status == "canceled" and script.reason is not None:
        body["reason"] = script.reason
    if status in ("failed", "canceled") and script.message is not None:
        body["message"] = script.message
    return body


def wrong_shape_body(shape: str, run_id: str) -> bytes:
    """A 200 body that is JSON but not a result envelope."""
    bodies: dict[str, Any] = {
        "list": [{"runId": run_id, "status": "completed"}],
        "no_status": {"runId": run_id, "result": {}},
        "no_run_id": {"status": "completed", "result": {}},
        "wrong_types": {"runId": 12345, "status": ["completed"]},
        "string": "completed",
    }
    return msgspec.json.encode(bodies[shape])


def gateway_body(status: int, body_format: str) -> tuple[bytes, str]:
    """The non-JSON body of a 502/503/504, as a proxy in front of Intuned would send it."""
    titles = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    title = f"{status} {titles.get(status, 'Error')}"
    if body_format == "text":
        return f"{title}\n".encode(), "text/plain; charset=utf-8"
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
    return html.encode(), "text/html; charset=utf-8"
