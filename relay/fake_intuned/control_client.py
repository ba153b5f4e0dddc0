"""A small typed client of the fake's HTTP control API (``/_fake/...``), for other processes.

The demo, benchmarks and anyone driving a ``relay fake-intuned`` they did not start use this
instead of the fake's internals. Each method is one control route and returns the decoded
struct of ``relay.fake_intuned.models``; a refusal raises ``ControlError`` with the fake's
detail. Every call has a timeout. Must never be pointed at the real Intuned.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import msgspec

from relay.fake_intuned.models import (
    CreateRun,
    FakeConfig,
    Fault,
    PushFaults,
    PushRecord,
    RunStats,
)

T = TypeVar("T")


class ControlError(RuntimeError):
    """The fake refused a control request (its status and detail in the message)."""


class FakeControl:
    """``FakeControl("http://127.0.0.1:8001")``: the control API at that root URL."""

    def __init__(self, root_url: str, *, timeout: float = 5.0) -> None:
        self.root_url = root_url.rstrip("/")
        self._http = httpx.Client(base_url=self.root_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> FakeControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, kind: type[T], body: Any = None, **params: str) -> T:
        content = None if body is None else msgspec.json.encode(body)
        headers = {"content-type": "application/json"} if content is not None else None
        resp = self._http.request(method, path, content=content, headers=headers, params=params)
        if resp.status_code >= 300:
            raise ControlError(f"{method} {path}: HTTP {resp.status_code} {resp.text[:300]}")
        return msgspec.json.decode(resp.content or b"null", type=kind)

    def create_run(self, spec: CreateRun) -> str:
        """``POST /_fake/runs``: a scripted run (optionally with a sink); its id."""
        return self._call("POST", "/_fake/runs", dict[str, str], spec)["runId"]

    def run_ids(self) -> list[str]:
        """``GET /_fake/runs``."""
        return self._call("GET", "/_fake/runs", dict[str, list[str]])["runIds"]

    def run_stats(self, run_id: str) -> RunStats:
        """``GET /_fake/runs/{runId}``."""
        return self._call("GET", f"/_fake/runs/{run_id}", RunStats)

    def set_push_faults(self, run_id: str, faults: PushFaults) -> PushFaults:
        """``POST /_fake/runs/{runId}/push-faults``: replace the run's push fault switches."""
        return self._call("POST", f"/_fake/runs/{run_id}/push-faults", PushFaults, faults)

    def pushes(self, run_id: str | None = None) -> list[PushRecord]:
        """``GET /_fake/pushes``."""
        params = {"runId": run_id} if run_id is not None else {}
        return self._call("GET", "/_fake/pushes", list[PushRecord], **params)

    def add_fault(self, fault: Fault) -> None:
        """``POST /_fake/faults``."""
        self._call("POST", "/_fake/faults", dict[str, int], fault)

    def configure(self, changes: dict[str, Any]) -> FakeConfig:
        """``POST /_fake/config`` with camelCase fields to merge."""
        return self._call("POST", "/_fake/config", FakeConfig, changes)

    def reset(self) -> None:
        """``POST /_fake/reset``."""
        self._call("POST", "/_fake/reset", type(None))
