"""The state of the bundled fake Intuned: runs and their lifecycles, faults, rate limits, counters.

One lock guards everything, and it is never held across an ``await``, so the same object can be
driven from the fake's event loop (the HTTP handlers) and from any other thread (a test's
control calls). Time comes only from the injectable ``clock``. This module does no I/O; it must
never be used by the relay itself, only by the fake's HTTP layer and by tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from relay.fake_intuned.models import (
    DEFAULT_PREFIX,
    PRE_ANSWER_KINDS,
    START_ONLY_KINDS,
    UNKNOWN_VALUES,
    CreateRun,
    FakeConfig,
    FakeStats,
    Fault,
    PollRecord,
    PushFaults,
    PushRecord,
    RateLimitConfig,
    RunScript,
    RunStats,
    default_error,
    default_reason,
    envelope,
    new_run_id,
)
from relay.fake_intuned.run import FakeRun
from relay.model import TERMINAL_STATUSES

Clock = Callable[[], float]


class FakeState:
    """Thread-safe state and control operations of the fake (see ``relay.fake_intuned``)."""

    def __init__(
        self,
        workspaces: Mapping[str, str],
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.monotonic,
        config: FakeConfig | None = None,
    ) -> None:
        if not workspaces:
            raise ValueError("the fake needs at least one workspace id -> api key")
        self.workspaces = dict(workspaces)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.clock = clock
        self._initial = config or FakeConfig()
        self._lock = threading.RLock()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._config = self._initial
        self._runs: dict[str, FakeRun] = {}
        self._faults: list[list[Any]] = []  # [fault, remaining or None]
        self._windows: dict[str, deque[float]] = {}
        self._starts: list[dict[str, Any]] = []
        self._sink_runs: dict[str, FakeRun] = {}  # runs whose push is still to come
        self._pushes: list[PushRecord] = []
        self._counts = {"result": 0, "start": 0}
        self._by_http: dict[int, int] = {}

    # ---- control operations (any thread) ---------------------------------------------------

    @property
    def default_workspace(self) -> str:
        """The first configured workspace id."""
        return next(iter(self.workspaces))

    @property
    def config(self) -> FakeConfig:
        """The current switches (an immutable snapshot)."""
        return self._config

    def configure(self, **changes: Any) -> FakeConfig:
        """Change some switches, e.g. ``configure(start_status=200, retention_seconds=5)``."""
        with self._lock:
            self._config = msgspec.structs.replace(self._config, **changes)
            return self._config

    def set_config(self, config: FakeConfig) -> None:
        """Replace every switch at once."""
        with self._lock:
            self._config = config

    def set_rate_limit(self, rate_limit: RateLimitConfig) -> None:
        """Replace the rate-limit configuration and forget the current windows."""
        with self._lock:
            self._config = msgspec.structs.replace(self._config, rate_limit=rate_limit)
            self._windows.clear()

    def create_run(
        self,
        script: RunScript | None = None,
        *,
        run_id: str | None = None,
        project_name: str = "demo-project",
        workspace_id: str | None = None,
    ) -> str:
        """Create a run (ValueError on a taken id or unknown workspace); return its id."""
        return self._create(
            CreateRun(
                script=script, run_id=run_id, project_name=project_name, workspace_id=workspace_id
            )
        )

    def create(self, spec: CreateRun) -> str:
        """Create a run from the control API's ``CreateRun`` (sink and push faults included)."""
        return self._create(spec)

    def _create(self, spec: CreateRun, fallback_result: Any = None) -> str:
        workspace = spec.workspace_id or self.default_workspace
        if workspace not in self.workspaces:
            raise ValueError(f"unknown workspace {workspace!r}")
        with self._lock:
            run_id = spec.run_id or new_run_id()
            if run_id in self._runs:
                raise ValueError(f"run {run_id!r} already exists")
            script = _settle(spec.script or self._config.default_script)
            run = FakeRun(run_id, spec.project_name, workspace, script, self.clock())
            run.fallback_result = fallback_result
            run.api, run.parameters = spec.api, spec.parameters
            if spec.sink is not None and spec.sink.get("type") == "webhook":
                run.sink = spec.sink
                run.push_faults = spec.push_faults or self._config.push_faults
                self._sink_runs[run_id] = run
            self._runs[run_id] = run
            return run_id

    def set_push_faults(self, run_id: str, faults: PushFaults) -> None:
        """Replace the push fault switches of one run (KeyError if unknown)."""
        with self._lock:
            self._runs[run_id].push_faults = faults

    def push_faults(self, run_id: str) -> PushFaults:
        """The push fault switches of one run (KeyError if unknown)."""
        with self._lock:
            return self._runs[run_id].push_faults

    def pushes(self, run_id: str | None = None) -> list[PushRecord]:
        """Every sink push attempt (or push not sent), or one run's, in order."""
        with self._lock:
            return [p for p in self._pushes if run_id is None or p.run_id == run_id]

    # ---- used by the sink pusher (the fake's own loop) -------------------------------------

    def due_pushes(self) -> list[FakeRun]:
        """Runs whose lifecycle ended and whose push is due now; each is returned once."""
        with self._lock:
            now, wall = self.clock(), time.time()
            due = []
            for run in list(self._sink_runs.values()):
                if not run.check_end(now, wall):
                    continue
                assert run.ended_at is not None
                if now >= run.ended_at + run.push_faults.delay_seconds:
                    del self._sink_runs[run.run_id]
                    run.pushed = True
                    due.append(run)
            return due

    def record_push(self, record: PushRecord) -> None:
        """Log one push attempt."""
        with self._lock:
            self._pushes.append(record)

    def run_ids(self) -> list[str]:
        """Every run id, in creation order."""
        with self._lock:
            return list(self._runs)

    def run_stats(self, run_id: str) -> RunStats:
        """Counters and poll log of one run (KeyError if unknown)."""
        with self._lock:
            return self._runs[run_id].stats()

    def poll_count(self, run_id: str) -> int:
        """How many result requests reached this run (every answer, faults included)."""
        with self._lock:
            return len(self._runs[run_id].log)

    def add_fault(self, fault: Fault) -> None:
        """Inject a fault (see ``Fault``); faults are tried in the order they were added."""
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear_faults(self, run_id: str | None = None) -> None:
        """Remove every fault, or only those of one run."""
        with self._lock:
            self._faults = [f for f in self._faults if run_id is not None and f[0].run_id != run_id]

    def faults(self) -> list[Fault]:
        """The faults still armed."""
        with self._lock:
            return [f[0] for f in self._faults]

    def start_log(self) -> list[dict[str, Any]]:
        """Every accepted start request: ``{"projectName", "runId", "body"}``."""
        with self._lock:
            return list(self._starts)

    def stats(self) -> FakeStats:
        """Counters over every request to the Intuned routes."""
        with self._lock:
            return FakeStats(
                result_requests=self._counts["result"],
                start_requests=self._counts["start"],
                by_http_status=dict(self._by_http),
                runs=len(self._runs),
            )

    def reset(self) -> None:
        """Forget every run, fault, window and counter; restore the initial switches."""
        with self._lock:
            self._reset_locked()

    # ---- used by the HTTP layer (the fake's own loop) --------------------------------------

    def auth_failure(self, workspace: str, key: str | None) -> int | None:
        """None when ``key`` opens ``workspace``; else the status to answer (401 or 403)."""
        if key is not None and self.workspaces.get(workspace) == key:
            return None
        if key is not None and key in self.workspaces.values():
            return self._config.wrong_workspace_status
        return 401

    def rate_check(self, path: str, template: str) -> float | None:
        """None when the request may pass (it is counted); else seconds until a slot frees."""
        with self._lock:
            cfg = self._config.rate_limit
            if not cfg.enabled:
                return None
            key = path if cfg.scope == "path" else template
            now = self.clock()
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - cfg.window_seconds:
                window.popleft()
            if len(window) < cfg.limit:
                window.append(now)
                return None
            oldest = window[0] if window else now
            return max(oldest + cfg.window_seconds - now, 0.0)

    def take_fault(
        self, endpoint: str, run_id: str | None, answer: dict[str, Any] | None = None
    ) -> Fault | None:
        """Consume the first armed fault that applies (pre-answer when ``answer`` is None)."""
        with self._lock:
            for entry in self._faults:
                fault: Fault = entry[0]
                if not _applies(fault, endpoint, run_id, answer):
                    continue
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                return fault
            return None

    def find_run(self, workspace: str, project: str, run_id: str) -> FakeRun | None:
        """The run at this address, or None (also for another project or workspace)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.workspace != workspace or run.project != project:
                return None
            return run

    def expired(self, run: FakeRun) -> bool:
        """True when the retention TTL is set and the run is older than it."""
        ttl = self._config.retention_seconds
        return ttl is not None and self.clock() - run.created_at > ttl

    def answer(self, run: FakeRun) -> dict[str, Any]:
        """The envelope of this poll; advances the run's lifecycle."""
        with self._lock:
            status = run.next_status(self.clock(), time.time())
            return envelope(run.run_id, status, run.script, run.fallback_result)

    def record_poll(self, run: FakeRun, http_status: int, status: str | None, note: str) -> None:
        """Log one result request of a run; remember the first terminal answer."""
        with self._lock:
            rec = PollRecord(self.clock(), time.time(), http_status, status, note)
            run.log.append(rec)
            if run.first_terminal is None and http_status == 200 and status in TERMINAL_STATUSES:
                run.first_terminal = rec

    def count(self, route: str, http_status: int) -> None:
        """Count one request to an Intuned route by its answer."""
        with self._lock:
            self._counts[route] += 1
            self._by_http[http_status] = self._by_http.get(http_status, 0) + 1

    def accept_start(self, project: str, workspace: str, body: dict[str, Any]) -> str | None:
        """Create the run of a valid start request; None when the project is unknown."""
        known = self._config.known_projects
        if known is not None and project not in known:
            return None
        spec = CreateRun(
            project_name=project,
            workspace_id=workspace,
            api=body["api"],
            parameters=body["parameters"],
            sink=body.get("sink"),
        )
        run_id = self._create(spec, {"api": body["api"], "parameters": body["parameters"]})
        session = body.get("authSession")
        if isinstance(session, dict) and isinstance(session.get("id"), str):
            with self._lock:
                self._runs[run_id].auth_session_id = session["id"]
        with self._lock:
            self._starts.append({"projectName": project, "runId": run_id, "body": body})
        return run_id


def _settle(script: RunScript) -> RunScript:
    """Fix a failed/canceled run's default error/reason once, so every answer is identical."""
    if script.outcome == "failed" and script.error is None:
        return msgspec.structs.replace(script, error=default_error())
    if script.outcome == "canceled" and script.reason is None:
        return msgspec.structs.replace(script, reason=default_reason())
    return script


def _applies(
    fault: Fault, endpoint: str, run_id: str | None, answer: dict[str, Any] | None
) -> bool:
    if fault.run_id is not None:
        if endpoint != "result" or fault.run_id != run_id:
            return False
    elif fault.endpoint not in (endpoint, "any"):
        return False
    if endpoint == "start":
        return _applies_to_start(fault, answer)
    if fault.kind in START_ONLY_KINDS:
        return False
    pre = fault.kind in PRE_ANSWER_KINDS or (
        fault.kind == "unknown_enum" and fault.field == "status"
    )
    if answer is None or pre:
        return answer is None and pre
    if fault.kind == "big_result":
        return answer.get("status") == "completed"
    head = fault.field.split(".")[0]
    return isinstance(answer.get(head), dict)


def _applies_to_start(fault: Fault, answer: dict[str, Any] | None) -> bool:
    """Start faults: ``hang`` after the run was created, the others before the body is read."""
    if fault.kind == "hang":
        return answer is not None
    return answer is None and (fault.kind in PRE_ANSWER_KINDS or fault.kind == "refuse")


def rewrite(fault: Fault, answer: dict[str, Any]) -> dict[str, Any]:
    """Apply a rewrite fault (unknown enum value, ~2 MB result) to an answer."""
    body = dict(answer)
    if fault.kind == "big_result":
        body["result"] = {"blob": "x" * max(fault.size_bytes - 12, 0)}
        return body
    head, _, leaf = fault.field.partition(".")
    value = fault.value or UNKNOWN_VALUES[fault.field]
    if not leaf:
        body[head] = value
    else:
        body[head] = {**body[head], leaf: value}
    return body


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1, as a Retry-After value."""
    return str(max(1, math.ceil(seconds)))
