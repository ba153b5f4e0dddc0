"""``/v1/runs/{projectName}/{runId}``: the last Intuned result the relay holds for a run.

Only a client that subscribed to the run may read it (and, with RELAY_RUN_SHARING=owner, only
the run's owner); to anyone else it does not exist (404).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, get
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import PathParameter

from relay.api.auth import ClientController
from relay.api.deps import ClientName, SettingsDep, StoreDep
from relay.api.responses import errors, validation_handler
from relay.api.schemas import RunView, iso
from relay.errors import NotFound
from relay.intuned.models import RAW_FIELDS_DECODER
from relay.model import run_key
from relay.services.registration import may_read_run

PASSED_THROUGH = ("runId", "status", "result", "error", "reason", "message", "extendedPayloads")


class RunController(ClientController):
    """Runs the client subscribed to."""

    path = "/v1/runs"
    tags = ["runs"]
    exception_handlers = {
        ValidationException: validation_handler(
            aliases={"project_name": "projectName", "run_id": "runId"}
        )
    }

    @get(
        "/{projectName:str}/{runId:str}",
        summary="The last Intuned result held for a run this client subscribed to",
        description="Send projectName percent-encoded as one path segment. 404 when this client "
        "never subscribed to the run, or when no result has been fetched yet.",
        responses={
            200: ResponseSpec(
                data_container=RunView,
                description="Intuned's fields exactly as sent (absent ones omitted), "
                "plus fetchedAt",
                generate_examples=False,
                examples=[
                    Example(
                        value={
                            "runId": "r1",
                            "status": "pending",
                            "fetchedAt": "2026-11-29T10:00:00.000Z",
                        }
                    )
                ],
            ),
            **errors(401, 404, 503),
        },
    )
    async def read(
        self,
        project_name: Annotated[str, PathParameter(name="projectName")],
        run_id: Annotated[str, PathParameter(name="runId")],
        client: ClientName,
        store: StoreDep,
        settings: SettingsDep,
    ) -> Response[bytes]:
        rk = run_key(project_name, run_id)
        if not await may_read_run(store, settings, client, rk):
            raise NotFound(f"no run {project_name}/{run_id} among your subscriptions")
        cached = await store.subscriptions.cached_result(rk)
        if cached is None:
            raise NotFound(f"no result fetched yet for {project_name}/{run_id}")
        fields = RAW_FIELDS_DECODER.decode(cached.body)
        view: dict[str, msgspec.Raw | str] = {k: fields[k] for k in PASSED_THROUGH if k in fields}
        view["fetchedAt"] = iso(cached.fetched_at)
        return Response(msgspec.json.encode(view), media_type="application/json")
