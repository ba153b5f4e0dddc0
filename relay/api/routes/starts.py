"""``POST /v1/runs`` (start-and-watch) and ``POST /v1/ingress/intuned/{token}`` (Intuned's push).

Thin: authenticate, read the body, call ``relay.services.starts`` / ``relay.services.ingress``,
answer. The ingress has no bearer key: its token and secret header are the credentials, checked
before the body is read, and a wrong one changes nothing.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from relay.api.auth import client_for
from relay.api.bodies import ClientBodyController, json_body_route
from relay.api.deps import callback_lookup
from relay.api.responses import errors
from relay.services.ingress import PushResult, authenticate, trigger_poll
from relay.services.starts import INGRESS_SECRET_HEADER, StartDeps, start_and_watch

START_MAX_BYTES: Final = 1024 * 1024
# Intuned's sink body carries the run's result (at most 2 MB by Intuned's own limit).
INGRESS_MAX_BYTES: Final = 4 * 1024 * 1024


class StartController(ClientBodyController):
    """Start a run with Intuned and watch it."""

    path = "/v1/runs"
    tags = ["runs"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Start an Intuned run and watch it (start-and-watch)",
        description="Header `Idempotency-Key` (1-255 visible ASCII) is required. Body: "
        "`projectName`, `callbackUrl`, optional `events` (`completed`, `failed`, `canceled`) "
        "and `metadata`; every other field goes to Intuned's run/start unchanged. "
        "201 `{runId, status, subscription}`; Intuned's 4xx with its body in `intuned` (a 429 "
        "with Intuned's `Retry-After`); 502 "
        "when Intuned is unavailable (`startOutcome`: `not_started`, or `unknown` after a "
        "timeout); 409 for a key used with another body, still in progress, or whose start "
        "outcome is unknown. The same key again answers the first answer again.",
        request_max_body_size=START_MAX_BYTES,
        **json_body_route(),
        responses=errors(400, 401, 409, 503),
    )
    async def start(self, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
        client = client_for(request.headers.get("authorization"), state.settings)
        deps = StartDeps(
            settings=state.settings,
            store=state.store,
            intuned=state.intuned,
            lookup=callback_lookup(state),
        )
        answer = await start_and_watch(
            deps, client, request.headers.get("idempotency-key"), await request.body()
        )
        wait = None if answer.retry_after is None else {"Retry-After": str(answer.retry_after)}
        return Response(
            answer.body, status_code=answer.status, media_type=MediaType.JSON, headers=wait
        )


@post(
    "/v1/ingress/intuned/{token:str}",
    status_code=HTTP_202_ACCEPTED,
    tags=["ingress"],
    summary="Intuned's webhook sink for runs started through the relay (no bearer key)",
    description="202 when the token and its secret header match: the run is polled at once "
    "(the body is not used). 404 for an unknown token, 401 for a wrong secret, 413 for a body "
    "over 4 MiB; none of them changes anything.",
    request_max_body_size=INGRESS_MAX_BYTES,
    security=[{"ingressSecret": []}],
    responses=errors(401, 404, 503),
)
async def intuned_push(
    token: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, str]]:
    """Authenticate a push, then make its run due for a poll now."""
    found = await authenticate(
        state.store.starts, token, request.headers.get(INGRESS_SECRET_HEADER)
    )
    if found is PushResult.UNKNOWN_TOKEN:
        raise NotFoundException("unknown or expired ingress token")
    if found is PushResult.BAD_SECRET:
        raise NotAuthorizedException(f"missing or wrong {INGRESS_SECRET_HEADER} header")
    await request.body()  # bounded by request_max_body_size: 413 before anything changes
    await trigger_poll(state.store.starts, str(found))
    return Response({"status": "accepted"}, status_code=HTTP_202_ACCEPTED)
