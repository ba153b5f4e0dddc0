"""The console's pages and actions for a signed-in client; each calls one service and renders.

Pages are GETs that read; actions are POSTs (CSRF-checked by the router's middleware) that call
a service and redirect back with a notice code (POST, redirect, GET). A subscription id without
the shape of one is a 404 before any lookup. This module must never read Redis itself or hold
business logic: that is ``relay.services``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from relay.api.deps import callback_lookup
from relay.api.schemas import is_subscription_id
from relay.console.chart import delivery_chart
from relay.console.views import NOTICES, shortened_event
from relay.errors import InvalidInput, NotFound
from relay.model import SubState
from relay.services import overview as overview_service
from relay.services import signing, subscriptions
from relay.services.redelivery import query_for, redeliver_matching
from relay.services.subscriptions import Filters
from relay.services.test_delivery import send_test
from relay.store import Stores

PAGE_SIZE = 50
TEST_DELIVERY_NOTE = (
    "Sends one signed relay.ping event to the URL now (the same checks as a registration; at "
    "most RELAY_TEST_DELIVERIES_PER_MINUTE a minute)."
)


class TestDeliveryForm(msgspec.Struct, frozen=True):
    """The Send test form's field (the CSRF token is checked by the middleware)."""

    callback_url: Annotated[str, msgspec.Meta(max_length=2048)] = ""


_NO_STORE = {"Cache-Control": "no-store"}
ClientDep = NamedDependency[str]  # the signed-in client (relay.console.auth)
Text = Annotated[str | None, QueryParameter(max_length=200)]


def _page(name: str, client: str, **context: Any) -> Template:
    notice = context.pop("done", None)
    return Template(
        template_name=name,
        context={"client": client, "notice": NOTICES.get(notice or ""), **context},
    )


def _see(path: str, **query: str | int) -> Redirect:
    target = f"{path}?{urlencode(query)}" if query else path
    return Redirect(target, status_code=HTTP_303_SEE_OTHER)


def _stores(state: State) -> Stores:
    stores: Stores = state.store
    return stores


def _checked_id(sid: str) -> str:
    if not is_subscription_id(sid):
        raise NotFound("no subscription with that id")
    return sid


def _filters(state: str | None, run: str | None, host: str | None) -> Filters:
    try:
        st = SubState(state) if state else None
    except ValueError:
        raise InvalidInput(f"state must be one of {', '.join(s.value for s in SubState)}") from None
    return Filters(state=st, run_id=(run or "").strip() or None, host=(host or "").strip() or None)


class ConsolePages(Controller):
    """Overview, subscriptions, one subscription, signing secret; and their actions."""

    path = "/"

    @get("/", name="console:overview")
    async def overview(self, client: ClientDep, state: State, done: Text = None) -> Template:
        ov = await overview_service.overview(_stores(state), client)
        return _page(
            "overview.html",
            client,
            ov=ov,
            chart=delivery_chart(ov.minutes),
            nav="overview",
            done=done,
        )

    @get("/subscriptions", name="console:subscriptions")
    async def subscriptions(
        self,
        client: ClientDep,
        state: State,
        state_: Annotated[str | None, QueryParameter(name="state", max_length=20)] = None,
        run: Text = None,
        host: Text = None,
        cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
        done: Text = None,
        count: FromQuery[int | None] = None,
        left: FromQuery[int | None] = None,
    ) -> Template:
        store = _stores(state).subscriptions
        filters = _filters(state_, run, host)
        listing = await subscriptions.list_subscriptions(
            store, client, filters, limit=PAGE_SIZE, cursor=cursor or None
        )
        keep = {k: v for k, v in (("state", state_), ("run", run), ("host", host)) if v}
        next_link = (
            "?" + urlencode({**keep, "cursor": listing.next_cursor})
            if listing.next_cursor
            else None
        )
        return _page(
            "subscriptions.html",
            client,
            listing=listing,
            filters=filters,
            states=list(SubState),
            next_link=next_link,
            first_link=("?" + urlencode(keep)) if cursor else None,
            nav="subscriptions",
            done=done,
            bulk=(count, left) if done == "bulk" and count is not None else None,
            exhausted=(await store.count_states(client))[SubState.EXHAUSTED.value],
        )

    @get("/subscriptions/{sid:str}", name="console:subscription")
    async def subscription(
        self, client: ClientDep, state: State, sid: FromPath[str], done: Text = None
    ) -> Template:
        detail = await subscriptions.subscription_detail(
            _stores(state).subscriptions, client, _checked_id(sid)
        )
        return _page(
            "subscription.html",
            client,
            d=detail,
            sub=detail.subscription,
            event=shortened_event(detail.event_body),
            nav="subscriptions",
            done=done,
        )

    @get("/subscriptions/{sid:str}/event.json", name="console:event")
    async def event_json(
        self, client: ClientDep, state: State, sid: FromPath[str]
    ) -> Response[bytes]:
        detail = await subscriptions.subscription_detail(
            _stores(state).subscriptions, client, _checked_id(sid)
        )
        if detail.event_body is None:
            raise NotFound("no event has been built for this subscription yet")
        return Response(detail.event_body, media_type="application/json", headers=_NO_STORE)

    @post("/subscriptions/{sid:str}/redeliver", name="console:redeliver")
    async def redeliver(self, client: ClientDep, state: State, sid: FromPath[str]) -> Redirect:
        await subscriptions.redeliver(_stores(state).subscriptions, client, _checked_id(sid))
        return _see(f"/console/subscriptions/{sid}", done="redelivered")

    @post("/subscriptions/{sid:str}/delete", name="console:delete")
    async def delete(self, client: ClientDep, state: State, sid: FromPath[str]) -> Redirect:
        await subscriptions.delete(_stores(state).subscriptions, client, _checked_id(sid))
        return _see("/console/subscriptions", done="deleted")

    @post("/redeliver-exhausted", name="console:bulk")
    async def redeliver_exhausted(self, client: ClientDep, state: State) -> Redirect:
        stores = _stores(state)
        count = await redeliver_matching(stores.controls, client, query_for(SubState.EXHAUSTED))
        left = (await stores.subscriptions.count_states(client))[SubState.EXHAUSTED.value]
        return _see(
            "/console/subscriptions", state=SubState.EXHAUSTED, done="bulk", count=count, left=left
        )

    @get("/signing", name="console:signing")
    async def signing(self, client: ClientDep, done: Text = None) -> Template:
        return _page(
            "signing.html",
            client,
            secret=None,
            nav="signing",
            done=done,
            test_note=TEST_DELIVERY_NOTE,
        )

    @post("/signing/reveal", name="console:reveal", status_code=200)
    async def reveal(self, client: ClientDep, state: State) -> Template:
        secret = await signing.current_secret(_stores(state).secrets, client)
        page = _page(
            "signing.html", client, secret=secret, nav="signing", test_note=TEST_DELIVERY_NOTE
        )
        page.headers.update(_NO_STORE)
        return page

    @post("/signing/rotate", name="console:rotate")
    async def rotate(self, client: ClientDep, state: State) -> Redirect:
        await signing.rotate_secret(_stores(state).secrets, client)
        return _see("/console/signing", done="rotated")

    @post("/test-delivery", name="console:test_delivery", status_code=200)
    async def test_delivery(
        self,
        client: ClientDep,
        state: State,
        data: Annotated[TestDeliveryForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template:
        stores = _stores(state)
        result = await send_test(
            controls=stores.controls,
            secrets=stores.secrets,
            sender=state.test_sender,
            settings=state.settings,
            client=client,
            url=data.callback_url.strip(),
            headers=None,
            lookup=callback_lookup(state),
        )
        return _page(
            "signing.html",
            client,
            secret=None,
            nav="signing",
            test_note=TEST_DELIVERY_NOTE,
            test_url=data.callback_url,
            test_result=result,
        )
