"""``/v1/subscriptions``: register, read, list, cancel and redeliver.

Handlers stay thin: decode, check the caller, one store call, enqueue, answer. The only outbound
work in the request path is resolving the callback host for the SSRF check. A subscription id
that does not have the shape of one is "not found" without a Redis lookup (the store derives key
names from it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
)

from relay.api.auth import client_for
from relay.api.bodies import STRICT_JSON_BODY, ClientBodyController, json_body_route
from relay.api.control_schemas import BulkRedeliverIn, BulkRedeliverOut
from relay.api.deps import ClientName, StoreDep, callback_lookup
from relay.api.responses import (
    errors,
    validation_handler,
)
from relay.api.schemas import (
    CALLBACK_URL_RULE,
    PROJECT_NAME_RULE,
    RUN_ID_RULE,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionPage,
    is_subscription_id,
    subscription_item,
    subscription_out,
)
from relay.errors import Conflict, InvalidInput, NotFound
from relay.model import (
    ChangeOutcome,
    SubState,
    run_key,
)
from relay.services.redelivery import query_for, redeliver_matching
from relay.services.registration import NewSubscription, register
from relay.settings import Settings
from relay.store import SubscriptionStore, encode_cursor

log = structlog.get_logger("relay.api")


def not_found(sid: str) -> NotFound:
    """404 for a subscription id (echoed only when it has the shape of one)."""
    return NotFound(
        f"no subscription {sid}" if is_subscription_id(sid) else "no subscription with that id"
    )


async def load_out(store: SubscriptionStore, sid: str, client: str) -> SubscriptionOut:
    """A client's subscription shaped for the API, or 404."""
    sub = await store.get_subscription(sid, client) if is_subscription_id(sid) else None
    if sub is None:
        raise not_found(sid)
    [status] = await store.run_statuses([run_key(sub.doc.project_name, sub.doc.run_id)])
    return subscription_out(sub, status)


class SubscriptionController(ClientBodyController):
    """Subscriptions of the authenticated client."""

    path = "/v1/subscriptions"
    tags = ["subscriptions"]
    exception_handlers = {
        ValidationException: validation_handler(
            aliases={"state_": "state", "run_id": "runId"},
            rules={
                "projectName": PROJECT_NAME_RULE,
                "runId": RUN_ID_RULE,
                "callbackUrl": CALLBACK_URL_RULE,
            },
        )
    }

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Register a run and a callback URL",
        description="201 with a new subscription; 200 with the existing one when the same client "
        "posts the same projectName, runId and callbackUrl again (409 subscription_exists when "
        "its metadata or headers differ). `headers` (up to 10, 4 KiB) are sent on every "
        "attempt and shown back as `***`. With RELAY_RUN_SHARING=owner, a run another client "
        "registered first is a 404. The callback URL's host is "
        "resolved now: a URL that is not http(s), has user info, does not resolve, or resolves "
        "to a forbidden address is a 400 that says why. The body must be JSON "
        "(Content-Type: application/json or none); any other Content-Type is a 400.",
        **json_body_route(SubscriptionCreate),
        responses={
            200: ResponseSpec(
                data_container=SubscriptionOut,
                description="The same registration existed: the existing subscription",
                generate_examples=False,
            ),
            **errors(400, 401, 404, 409, 413, 429, 503),
        },
    )
    async def create(
        self,
        data: Annotated[SubscriptionCreate, STRICT_JSON_BODY],
        request: Request[Any, Any, Any],
        state: State,
    ) -> Response[SubscriptionOut]:
        # Read from app state here rather than as injected dependencies: Litestar resolves
        # a batch of several dependencies in an anyio task group (a task each) per request.
        settings: Settings = state.settings
        client = client_for(request.headers.get("authorization"), settings)  # require_client passed
        new = NewSubscription(
            project_name=data.project_name,
            run_id=data.run_id,
            callback_url=data.callback_url,
            events=tuple(data.events) if data.events is not None else None,
            metadata=data.metadata,
            headers=data.headers,
        )
        reg = await register(state.store, settings, client, new, callback_lookup(state))
        return Response(
            subscription_out(reg.subscription, reg.run_status),
            status_code=HTTP_201_CREATED if reg.created else HTTP_200_OK,
        )

    @get(
        "/{subscription_id:str}",
        summary="One subscription with its attempt log",
        description="405 for the id `redeliver`: that path is the bulk redeliver's (POST only).",
        responses=errors(401, 404, 405, 503),
    )
    async def read(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep
    ) -> SubscriptionOut:
        return await load_out(store.subscriptions, subscription_id, client)

    @get(
        "/",
        summary="The client's subscriptions, newest first",
        description="Follow `nextCursor` (null on the last page) to read every page; items "
        "created while paging are newer and so never appear in a later page. Items carry no "
        "`attempts`: read one subscription for its attempt log.",
        responses=errors(400, 401, 503),
    )
    async def list_(
        self,
        client: ClientName,
        store: StoreDep,
        run_id: Annotated[
            str | None,
            QueryParameter(name="runId", max_length=128, description="Only this run's"),
        ] = None,
        state_: Annotated[
            SubState | None, QueryParameter(name="state", description="Only in this state")
        ] = None,
        limit: Annotated[
            int, QueryParameter(name="limit", ge=1, le=200, description="Page size")
        ] = 50,
        cursor: Annotated[
            str | None,
            QueryParameter(
                name="cursor", max_length=512, description="`nextCursor` of the previous page"
            ),
        ] = None,
    ) -> SubscriptionPage:
        # One item more than asked tells whether another page exists, so the last page's
        # nextCursor is null rather than a cursor to an empty page.
        try:
            page = await store.subscriptions.list_subscriptions(
                client,
                state=state_,
                limit=limit + 1,
                cursor=cursor,
                run_id=run_id,
            )
        except ValueError as exc:
            raise InvalidInput(f"cursor: {exc}; pass a nextCursor from a previous page") from None
        items = page.items[:limit]
        more = len(page.items) > limit
        statuses = await store.subscriptions.run_statuses(
            [run_key(s.doc.project_name, s.doc.run_id) for s in items]
        )
        last = items[-1].doc if items else None
        return SubscriptionPage(
            items=[subscription_item(s, st) for s, st in zip(items, statuses, strict=True)],
            next_cursor=encode_cursor(last.created_at, last.id) if more and last else None,
        )

    @delete(
        "/{subscription_id:str}",
        summary="Cancel: no further deliveries",
        description="204 also when it was canceled already (idempotent). When no subscription "
        "is left on the run, its polling stops. 405 for an empty id or the id `redeliver` (those "
        "paths are other routes').",
        responses=errors(401, 404, 405, 503),
    )
    async def cancel(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep
    ) -> None:
        if not is_subscription_id(subscription_id) or not await store.subscriptions.cancel(
            subscription_id, client
        ):
            raise not_found(subscription_id)
        log.info("subscription_canceled", client=client, subscription_id=subscription_id)

    @post(
        "/redeliver",
        status_code=HTTP_202_ACCEPTED,
        summary="Redeliver every subscription in a state that matches a filter",
        description="Each matching subscription of this client starts a new attempt series "
        "(same webhook-id), exactly as the single redeliver. `since`/`until` (RFC 3339) bound "
        "when the subscription reached its state (`updatedAt`); `callbackHost` compares the "
        "callback URL's host, case-insensitively.",
        **json_body_route(BulkRedeliverIn),
        responses=errors(400, 401, 503),
    )
    async def redeliver_many(
        self,
        data: Annotated[BulkRedeliverIn, STRICT_JSON_BODY],
        client: ClientName,
        store: StoreDep,
    ) -> BulkRedeliverOut:
        def ms(moment: datetime | None) -> int | None:
            return int(moment.timestamp() * 1000) if moment is not None else None

        query = query_for(
            SubState(data.state),
            run_id=data.run_id,
            host=data.callback_host,
            since_ms=ms(data.since),
            until_ms=ms(data.until),
        )
        count = await redeliver_matching(store.controls, client, query)
        log.info("bulk_redeliver", client=client, state=data.state, count=count)
        return BulkRedeliverOut(count=count)

    @post(
        "/{subscription_id:str}/redeliver",
        status_code=HTTP_202_ACCEPTED,
        summary="Send the event again (same webhook-id) with a fresh attempt series",
        description="409 while the run is not terminal yet (and for canceled or skipped "
        "subscriptions, which have no event to send).",
        responses=errors(401, 404, 405, 409, 503),
    )
    async def redeliver(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep
    ) -> SubscriptionOut:
        if not is_subscription_id(subscription_id):
            raise not_found(subscription_id)
        res = await store.subscriptions.redeliver(subscription_id, client)
        if res.outcome is ChangeOutcome.NOT_FOUND:
            raise not_found(subscription_id)
        if res.outcome is ChangeOutcome.CONFLICT:
            raise Conflict(
                f"subscription is {res.state}: only a terminal run's event can be redelivered"
            )
        log.info("redeliver", client=client, subscription_id=subscription_id)
        return await load_out(store.subscriptions, subscription_id, client)
