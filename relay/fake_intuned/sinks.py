"""Webhook sinks of the bundled fake Intuned: push Intuned's sink payload when a run ends.

A run started with ``sink: {"type": "webhook", "url", "headers"?, "skipOnFail"?,
"apisToSend"?}`` is pushed once its lifecycle ends (intuned-api.md §6): a JSON ``POST`` of the
"Sink Body" to ``url`` with the sink's static headers, no signature. A non-2xx answer or no
answer is retried up to ``FakeConfig.sink_attempts`` times with a doubling backoff; every attempt
has ``sink_timeout_seconds``. Per-run ``PushFaults`` lose, delay, duplicate or advance the push.
Only loopback URLs are pushed to unless ``sink_allow_remote``. Every attempt is logged
(``GET /_fake/pushes``). This module must never be imported by the relay's API or workers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp import web

from relay.fake_intuned.models import PushRecord
from relay.fake_intuned.run import FakeRun
from relay.fake_intuned.state import FakeState

log = logging.getLogger(__name__)

TICK_SECONDS: Final = 0.02  # how often ended runs are looked for
_STATUS_CODES: Final = {"completed": 200, "failed": 500, "canceled": 500}  # [I] undocumented


def sink_payload(run: FakeRun) -> dict[str, Any]:
    """The documented "Sink Body" of a Run API run (no ``projectJob``/``projectJobRun``)."""
    outcome = run.script.outcome
    result: dict[str, Any] = {"status": outcome, "statusCode": _STATUS_CODES[outcome]}
    if outcome == "completed":
        value = run.script.result if run.script.result is not None else run.fallback_result
        if value is not None:
            result["result"] = value
    else:
        detail = run.script.error if outcome == "failed" else run.script.reason
        detail = detail or {}
        result["error"] = str(detail.get("code") or detail.get("type") or outcome)
        result["message"] = str(run.script.message or detail.get("message") or outcome)
    body: dict[str, Any] = {
        "apiInfo": {
            "name": run.api,
            "parameters": run.parameters,
            "runId": run.run_id,
            "result": result,
        },
        "workspaceId": run.workspace,
        "project": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, run.project)), "name": run.project},
    }
    if run.auth_session_id is not None:
        body["authSession"] = {"id": run.auth_session_id}
    return body


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _skip_note(run: FakeRun, allow_remote: bool) -> str | None:
    """Why this run's push is not sent at all, or None."""
    sink = run.sink or {}
    apis = sink.get("apisToSend")
    if run.push_faults.lost:
        return "lost"
    if sink.get("skipOnFail") is True and run.script.outcome != "completed":
        return "skipped:skipOnFail"
    if isinstance(apis, list) and run.api not in apis:
        return "skipped:apisToSend"
    if not allow_remote and not _is_loopback(str(sink.get("url", ""))):
        return "refused:not-loopback"
    return None


class SinkPusher:
    """The fake's background task: finds ended sink runs and pushes them (one task per push)."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp ``cleanup_ctx``: tick while the application runs; cancel pushes at exit."""
        self._session = aiohttp.ClientSession()
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(ticker, *self._tasks, return_exceptions=True)
            await self._session.close()

    async def _tick(self) -> None:
        while True:
            for run in self.state.due_pushes():
                task = asyncio.create_task(self._push(run))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(TICK_SECONDS)

    async def _push(self, run: FakeRun) -> None:
        sink = run.sink or {}
        url = str(sink.get("url", ""))
        note = _skip_note(run, self.state.config.sink_allow_remote)
        if note is not None:
            self.state.record_push(PushRecord(run.run_id, url, 0, 0, time.time(), None, note))
            return
        body = msgspec.json.encode(sink_payload(run))
        headers = {**sink.get("headers", {}), "Content-Type": "application/json"}
        for copy in range(1 + max(run.push_faults.duplicates, 0)):
            await self._deliver(run.run_id, url, body, headers, copy)

    async def _deliver(
        self, run_id: str, url: str, body: bytes, headers: dict[str, str], copy: int
    ) -> None:
        """One copy: attempts until a 2xx or ``sink_attempts`` are used, backing off between."""
        config = self.state.config
        timeout = aiohttp.ClientTimeout(total=config.sink_timeout_seconds)
        assert self._session is not None
        for attempt in range(1, max(config.sink_attempts, 1) + 1):
            status: int | None = None
            try:
                async with self._session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as resp:
                    await resp.read()
                    status, note = resp.status, "sent"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                note = f"error:{type(exc).__name__}"
            self.state.record_push(
                PushRecord(run_id, url, copy, attempt, time.time(), status, note)
            )
            if status is not None and 200 <= status < 300:
                return
            if attempt < config.sink_attempts:
                await asyncio.sleep(config.sink_backoff_seconds * 2 ** (attempt - 1))
        attempts = max(config.sink_attempts, 1)
        self.state.record_push(
            PushRecord(run_id, url, copy, attempts, time.time(), None, "gave-up")
        )
        log.info("fake intuned: push of run %s copy %d gave up", run_id, copy)
