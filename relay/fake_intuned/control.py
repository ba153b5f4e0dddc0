"""The control API of the bundled fake Intuned, under ``/_fake/`` (no api key needed).

Lets tests and benchmarks in other processes drive the fake over HTTP; every route mirrors a
method of ``FakeState`` and takes/returns the camelCase JSON of ``relay.fake_intuned.models``:

========================================  ==================================================
POST /_fake/runs                          CreateRun (script, sink, pushFaults) → 201 {runId}
GET /_fake/runs                           {runIds: [...]}
GET /_fake/runs/{runId}                   RunStats: polls and their log, end, sink
GET|POST /_fake/runs/{runId}/push-faults  read / merge the run's PushFaults
GET /_fake/pushes[?runId=]                sink push attempts [PushRecord]
GET /_fake/faults                         the armed Fault list
POST /_fake/faults                        a Fault or a list → 201 {armed: n}
DELETE /_fake/faults[?runId=]             clear all faults (or one run's) → 204
GET|POST /_fake/rate-limit                read / merge RateLimitConfig fields
GET|POST /_fake/config                    read / merge FakeConfig fields
GET /_fake/stats                          FakeStats
GET /_fake/starts                         accepted starts [{projectName, runId, body}]
POST /_fake/reset                         forget everything, initial config → 204
========================================  ==================================================

This module must never be mounted on anything but the fake.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from relay.fake_intuned.models import CreateRun, FakeConfig, Fault, PushFaults, RateLimitConfig
from relay.fake_intuned.routes import json_response
from relay.fake_intuned.state import FakeState

T = TypeVar("T")
_FAULTS = msgspec.json.Decoder(Fault | list[Fault])
_CREATE = msgspec.json.Decoder(CreateRun)


def _bad(exc: Exception) -> web.Response:
    return json_response(400, {"detail": str(exc)})


def _merge(current: T, changes: bytes, kind: type[T]) -> T:
    merged = msgspec.to_builtins(current)
    patch = msgspec.json.decode(changes)
    if not isinstance(patch, dict):
        raise msgspec.ValidationError("expected a JSON object")
    merged.update(patch)
    return msgspec.convert(merged, kind)


class ControlRoutes:
    """Handlers of ``/_fake/...`` over one ``FakeState``."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def create_run(self, request: web.Request) -> web.Response:
        """``POST /_fake/runs``."""
        try:
            spec = _CREATE.decode(await request.read() or b"{}")
        except msgspec.DecodeError as exc:
            return _bad(exc)
        try:
            run_id = self.state.create(spec)
        except ValueError as exc:
            return json_response(409, {"detail": str(exc)})
        stats = self.state.run_stats(run_id)
        return json_response(
            201,
            {"runId": run_id, "projectName": stats.project_name, "workspaceId": stats.workspace_id},
        )

    async def list_runs(self, request: web.Request) -> web.Response:
        """``GET /_fake/runs``."""
        return json_response(200, {"runIds": self.state.run_ids()})

    async def get_run(self, request: web.Request) -> web.Response:
        """``GET /_fake/runs/{runId}``."""
        try:
            return json_response(200, self.state.run_stats(request.match_info["run_id"]))
        except KeyError:
            return json_response(404, {"detail": "no such run"})

    async def push_faults(self, request: web.Request) -> web.Response:
        """``GET|POST /_fake/runs/{runId}/push-faults``."""
        run_id = request.match_info["run_id"]
        try:
            current = self.state.push_faults(run_id)
            if request.method == "POST":
                current = _merge(current, await request.read(), PushFaults)
                self.state.set_push_faults(run_id, current)
        except KeyError:
            return json_response(404, {"detail": "no such run"})
        except msgspec.MsgspecError as exc:
            return _bad(exc)
        return json_response(200, current)

    async def pushes(self, request: web.Request) -> web.Response:
        """``GET /_fake/pushes[?runId=]``."""
        return json_response(200, self.state.pushes(request.query.get("runId")))

    async def list_faults(self, request: web.Request) -> web.Response:
        """``GET /_fake/faults``."""
        return json_response(200, self.state.faults())

    async def add_faults(self, request: web.Request) -> web.Response:
        """``POST /_fake/faults``."""
        try:
            decoded = _FAULTS.decode(await request.read())
            faults = decoded if isinstance(decoded, list) else [decoded]
            for fault in faults:
                self.state.add_fault(fault)
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(exc)
        return json_response(201, {"armed": len(faults)})

    async def clear_faults(self, request: web.Request) -> web.Response:
        """``DELETE /_fake/faults``."""
        self.state.clear_faults(request.query.get("runId"))
        return web.Response(status=204)

    async def rate_limit(self, request: web.Request) -> web.Response:
        """``GET|POST /_fake/rate-limit``."""
        if request.method == "POST":
            try:
                current = self.state.config.rate_limit
                self.state.set_rate_limit(_merge(current, await request.read(), RateLimitConfig))
            except msgspec.MsgspecError as exc:
                return _bad(exc)
        return json_response(200, self.state.config.rate_limit)

    async def config(self, request: web.Request) -> web.Response:
        """``GET|POST /_fake/config``."""
        if request.method == "POST":
            try:
                config = _merge(self.state.config, await request.read(), FakeConfig)
            except msgspec.MsgspecError as exc:
                return _bad(exc)
            self.state.set_config(config)
        return json_response(200, self.state.config)

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_fake/stats``."""
        return json_response(200, self.state.stats())

    async def starts(self, request: web.Request) -> web.Response:
        """``GET /_fake/starts``."""
        body: list[dict[str, Any]] = self.state.start_log()
        return json_response(200, body)

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /_fake/reset``."""
        self.state.reset()
        return web.Response(status=204)


def add_control_routes(app: web.Application, state: FakeState) -> None:
    """Register the ``/_fake/`` routes."""
    c = ControlRoutes(state)
    app.router.add_post("/_fake/runs", c.create_run)
    app.router.add_get("/_fake/runs", c.list_runs)
    app.router.add_get("/_fake/runs/{run_id}", c.get_run)
    app.router.add_route("GET", "/_fake/runs/{run_id}/push-faults", c.push_faults)
    app.router.add_route("POST", "/_fake/runs/{run_id}/push-faults", c.push_faults)
    app.router.add_get("/_fake/pushes", c.pushes)
    app.router.add_get("/_fake/faults", c.list_faults)
    app.router.add_post("/_fake/faults", c.add_faults)
    app.router.add_delete("/_fake/faults", c.clear_faults)
    app.router.add_route("GET", "/_fake/rate-limit", c.rate_limit)
    app.router.add_route("POST", "/_fake/rate-limit", c.rate_limit)
    app.router.add_route("GET", "/_fake/config", c.config)
    app.router.add_route("POST", "/_fake/config", c.config)
    app.router.add_get("/_fake/stats", c.stats)
    app.router.add_get("/_fake/starts", c.starts)
    app.router.add_post("/_fake/reset", c.reset)
