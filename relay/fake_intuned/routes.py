"""The HTTP face of the bundled fake Intuned: the Run API routes, reserved routes and faults.

Routes under the prefix (default ``/api/v1/workspace``), as in intuned-api.md §1-§4 and §8:

- ``POST /{ws}/projects/{projectName}/run/start`` and
  ``GET /{ws}/projects/{projectName}/run/{runId}/result``;
- the other SDK paths (``…/projects/{p}/jobs…``, ``…/projects/{p}/auth-sessions…``,
  ``/{ws}/web-tasks…``) are reserved: after the api-key check they answer **501**
  ``not-implemented`` JSON;
- anything else under the prefix answers **404** ``not-found`` JSON.

Order of checks on the two Run API routes: api key (401/403), rate limit (429), the run or
project (404, also past the retention TTL), injected faults, then the answer. The control API
lives in ``relay.fake_intuned.control``. This module must never be served in production.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import msgspec
from aiohttp import web

from relay.fake_intuned.models import (
    REFUSAL_CODES,
    UNKNOWN_VALUES,
    Fault,
    error_body,
    gateway_body,
    wrong_shape_body,
)
from relay.fake_intuned.state import FakeState, retry_after_header, rewrite

JSON = "application/json"
_HANG_MS = 30_000
START_TEMPLATE = "POST /{ws}/projects/{projectName}/run/start"
RESULT_TEMPLATE = "GET /{ws}/projects/{projectName}/run/{runId}/result"
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "proxy": (str, type(None)),
    "saveTrace": (bool,),
    "requestTimeout": (int,),
    "retry": (dict,),
    "authSession": (dict,),
    "sink": (dict,),
}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response; ``body`` is bytes already encoded or a value to encode."""
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return web.Response(status=status, body=raw, content_type=JSON, headers=headers)


def _auth_error(status: int) -> web.Response:
    if status == 403:
        return json_response(403, error_body("forbidden", "The API key has no access here."))
    return json_response(401, error_body("unauthorized", "Missing or invalid x-api-key header."))


def _not_found(what: str) -> web.Response:
    return json_response(404, error_body("not-found", f"{what} not found."))


def _too_many(state: FakeState, retry_after: str | None) -> web.Response:
    cfg = state.config.rate_limit
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if cfg.body is None:
        body = error_body(
            "too-many-requests",
            f"Rate limit of {cfg.limit} requests per {cfg.window_seconds:g} s exceeded.",
            retirable=True,
        )
        return json_response(429, body, headers)
    headers["Content-Type"] = cfg.content_type
    return web.Response(status=429, body=cfg.body.encode(), headers=headers)


def validate_start(body: Any) -> list[str]:
    """The problems of a start request body (empty when it is valid)."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = []
    if not isinstance(body.get("api"), str) or not body["api"]:
        problems.append("api must be a non-empty string")
    if not isinstance(body.get("parameters"), dict):
        problems.append("parameters must be an object")
    problems.extend(_sink_problems(body.get("sink")))
    for name, types in _OPTIONAL_TYPES.items():
        if name not in body:
            continue
        value = body[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{name} has the wrong type")
    return problems


def _sink_problems(sink: Any) -> list[str]:
    """A webhook sink needs a string ``url`` and string ``headers`` (intuned-api.md §6)."""
    if not isinstance(sink, dict) or sink.get("type") != "webhook":
        return []
    problems = []
    if not isinstance(sink.get("url"), str) or not sink["url"]:
        problems.append("sink.url must be a non-empty string")
    headers = sink.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        problems.append("sink.headers must map names to strings")
    return problems


async def _serve_fault(
    request: web.Request, state: FakeState, fault: Fault, run_id: str
) -> web.StreamResponse | None:
    """Answer with a pre-answer fault; None when the normal answer should follow (slow)."""
    kind = fault.kind
    if kind == "slow":
        await asyncio.sleep(fault.delay_ms / 1000)
        return None
    if kind == "error_500":
        msg = "An internal server error occurred."
        body = error_body("internal-server-error", msg, category="infrastructure", retirable=True)
        return json_response(500, body)
    if kind == "gateway":
        raw, content_type = gateway_body(fault.status, fault.body_format)
        return web.Response(status=fault.status, body=raw, headers={"Content-Type": content_type})
    if kind == "malformed_json":
        return json_response(200, b'{"runId": "' + run_id.encode() + b'", "status": "compl')
    if kind == "wrong_shape":
        return json_response(200, wrong_shape_body(fault.shape, run_id))
    if kind == "rate_limited":
        return _too_many(state, fault.retry_after)
    if kind == "refuse":
        status = fault.status if 400 <= fault.status < 500 else 400
        code = REFUSAL_CODES.get(status, "bad-request")
        msg = f"Refused by the fake ({code})."
        return json_response(status, error_body(code, msg, details=[{"field": "api"}]))
    if kind == "unknown_enum":
        value = fault.value or UNKNOWN_VALUES["status"]
        return json_response(200, {"runId": run_id, "status": value})
    # "reset": close the TCP connection with an RST and no response at all.
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError  # aiohttp drops a handler cancelled after its connection died


def _note(fault: Fault | None) -> str:
    return f"fault:{fault.kind}" if fault is not None else "answer"


class IntunedRoutes:
    """The handlers of the Run API routes over one ``FakeState``."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def _gate(self, request: web.Request, template: str) -> web.Response | None:
        state = self.state
        failure = state.auth_failure(request.match_info["ws"], request.headers.get("x-api-key"))
        if failure is not None:
            return _auth_error(failure)
        wait = state.rate_check(request.rel_url.raw_path, template)
        if wait is not None:
            header = retry_after_header(wait) if state.config.rate_limit.retry_after else None
            return _too_many(state, header)
        return None

    async def start(self, request: web.Request) -> web.StreamResponse:
        """``POST …/run/start``."""
        response = await self._start(request)
        self.state.count("start", response.status)
        return response

    async def _start(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        gated = self._gate(request, START_TEMPLATE)
        if gated is not None:
            return gated
        fault = state.take_fault("start", None)
        if fault is not None:
            served = await _serve_fault(request, state, fault, "")
            if served is not None:
                return served
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            body = None
        problems = validate_start(body)
        if problems:
            return json_response(400, error_body("bad-request", "; ".join(problems)))
        ws, project = request.match_info["ws"], request.match_info["project"]
        run_id = state.accept_start(project, ws, body)
        if run_id is None:
            return _not_found(f"Project {project!r}")
        hang = state.take_fault("start", None, {"runId": run_id})
        if hang is not None:  # the run exists; the answer comes too late for most clients
            await asyncio.sleep((hang.delay_ms or _HANG_MS) / 1000)
        return json_response(state.config.start_status, {"runId": run_id, "status": "pending"})

    async def result(self, request: web.Request) -> web.StreamResponse:
        """``GET …/run/{runId}/result``."""
        state = self.state
        ws, project = request.match_info["ws"], request.match_info["project"]
        run_id = request.match_info["run_id"]
        gated = self._gate(request, RESULT_TEMPLATE)
        run = state.find_run(ws, project, run_id) if gated is None or gated.status == 429 else None
        response: web.StreamResponse
        status: str | None = None
        note = "answer"
        if gated is not None:
            response, note = gated, "rate-limited" if gated.status == 429 else "unauthorized"
        elif run is None or state.expired(run):
            response, note = _not_found(f"Run {run_id!r}"), "expired" if run else "unknown"
        else:
            fault = state.take_fault("result", run_id)
            served = None
            if fault is not None:
                note = _note(fault)
                try:
                    served = await _serve_fault(request, state, fault, run_id)
                except asyncio.CancelledError:
                    state.record_poll(run, 0, None, note)
                    state.count("result", 0)
                    raise
            if served is not None:
                response = served
            else:
                answer = state.answer(run)
                late = state.take_fault("result", run_id, answer)
                if late is not None:
                    answer, note = rewrite(late, answer), _note(late)
                status = answer["status"]
                response = json_response(200, answer)
        if run is not None:
            state.record_poll(run, response.status, status, note)
        state.count("result", response.status)
        return response

    async def reserved(self, request: web.Request) -> web.StreamResponse:
        """Other SDK paths: 501 after the api-key check (the fake does not implement them)."""
        failure = self.state.auth_failure(
            request.match_info["ws"], request.headers.get("x-api-key")
        )
        if failure is not None:
            return _auth_error(failure)
        msg = f"{request.method} {request.rel_url.path} is not implemented by the fake."
        return json_response(501, error_body("not-implemented", msg, category="infrastructure"))

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        """Any other path under the prefix."""
        return _not_found(f"Route {request.method} {request.rel_url.path}")


def add_intuned_routes(app: web.Application, state: FakeState) -> None:
    """Register the Run API routes, the reserved SDK routes and the JSON 404 under the prefix."""
    routes = IntunedRoutes(state)
    base = state.prefix + "/{ws}"
    project = base + "/projects/{project}"
    app.router.add_post(project + "/run/start", routes.start)
    app.router.add_get(project + "/run/{run_id}/result", routes.result)
    for reserved in (project + "/jobs{tail:.*}", project + "/auth-sessions{tail:.*}"):
        app.router.add_route("*", reserved, routes.reserved)
    app.router.add_route("*", base + "/web-tasks{tail:.*}", routes.reserved)
    app.router.add_route("*", state.prefix + "/{tail:.*}", routes.unknown)
