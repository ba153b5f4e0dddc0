"""The bundled fake Intuned in its own process, rate limit off, plus two bulk routes for benches.

``python -m bench.fake_server --port P`` serves ``relay.fake_intuned.FakeIntuned`` (uvloop) with
the bench's workspace and key, and adds:

    POST /_bench/runs      {"prefix", "count", "script"} -> creates runs prefix0..prefixN-1
    POST /_bench/runs/info {"runIds": [...]} -> {runId: {createdAt, polls, firstTerminalAt,
                           firstTerminalWall}} without the poll logs

Creating 100,000 runs one control request at a time would take longer than the scenario.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec
import uvloop
from aiohttp import web

from bench.procs import INTUNED_KEY, PROJECT, WORKSPACE
from relay.fake_intuned import FakeConfig, FakeIntuned, FakeIntunedServer, RateLimitConfig
from relay.fake_intuned.models import RunScript


class BulkRuns(msgspec.Struct, rename="camel"):
    """Body of ``POST /_bench/runs``."""

    prefix: str
    count: int
    script: RunScript
    start: int = 0


class RunIds(msgspec.Struct, rename="camel"):
    """Body of ``POST /_bench/runs/info``."""

    run_ids: list[str]


def add_bench_routes(app: web.Application, fake: FakeIntuned) -> None:
    """The bulk routes."""

    async def create(request: web.Request) -> web.Response:
        spec = msgspec.json.decode(await request.read(), type=BulkRuns)
        for i in range(spec.start, spec.start + spec.count):
            fake.create_run(spec.script, run_id=f"{spec.prefix}{i}", project_name=PROJECT)
        return web.json_response({"created": spec.count})

    async def info(request: web.Request) -> web.Response:
        ids = msgspec.json.decode(await request.read(), type=RunIds).run_ids
        out: dict[str, Any] = {}
        for run_id in ids:
            run = fake.find_run(WORKSPACE, PROJECT, run_id)
            if run is None:
                continue
            first = run.first_terminal
            out[run_id] = {
                "createdAt": run.created_at,
                "polls": len(run.log),
                "firstTerminalAt": first.at if first else None,
                "firstTerminalWall": first.wall if first else None,
            }
        return web.Response(body=msgspec.json.encode(out), content_type="application/json")

    app.router.add_post("/_bench/runs", create)
    app.router.add_post("/_bench/runs/info", info)


async def serve(port: int) -> None:
    """Serve until killed."""
    config = FakeConfig(rate_limit=RateLimitConfig(enabled=False))
    fake = FakeIntuned({WORKSPACE: INTUNED_KEY}, config=config)
    original = fake.build_app

    def build() -> web.Application:
        app = original()
        add_bench_routes(app, fake)
        return app

    fake.build_app = build  # type: ignore[method-assign]
    async with FakeIntunedServer(fake, host="127.0.0.1", port=port):
        await asyncio.Event().wait()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
