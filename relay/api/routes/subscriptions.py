"""``/v1/subscriptions``: register, read, list, cancel and redeliver.

Handlers stay thin: decode, check the caller, one store call, enqueue, answer. The only outbound
work in the request path is resolving the callback host for the SSRF check.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import msgspec
import structlog
from arq.connections import ArqRedis
from litestar import Controller, Response, delete, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_409_CONFLICT,
)

from relay.api.deps import ArqDep, ClientName, SettingsDep, StoreDep
from relay.api.schemas import (
    METADATA_MAX_BYTES,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionPage,
    subscription_out,
)
from relay.model import (
    EVENT_STATUSES,
    SubscriptionDoc,
    SubState,
    new_subscription_id,
    now_ms,
    run_key,
)
from relay.store import Store
from relay.webhooks.callbacks import check_callback

log = structlog.get_logger("relay.api")


class ConflictException(ClientException):
    """409: valid, but not in the resource's current state."""

    status_code = HTTP_409_CONFLICT


async def enqueue(arq: ArqRedis, function: str, arg: str, job_id: str) -> None:
    """Kick a worker now; the due sets make this an optimisation, never a requirement."""
    try:
        await arq.enqueue_job(function, arg, _job_id=job_id)
    except Exception as exc:  # a failed kick only delays work until the next pump pass
        log.warning("enqueue_failed", function=function, error=repr(exc))


async def load_out(store: Store, sid: str, client: str) -> SubscriptionOut:
    """A client's subscription shaped for the API, or 404."""
    sub = await store.get_subscription(sid, client)
    if sub is None:
        raise NotFoundException(f"no subscription {sid}")
    [status] = await store.run_statuses(
        [run_key(sub.doc.workspace_id, sub.doc.project_name, sub.doc.run_id)]
    )
    return subscription_out(sub, status)


class SubscriptionController(Controller):
    """Subscriptions of the authenticated client."""

    path = "/v1/subscriptions"
    tags = ["subscriptions"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Register a run and a callback URL",
        description="201 with a new subscription; 200 with the existing one when the same client "
        "posts the same projectName, runId and callbackUrl again.",
    )
    async def create(
        self,
        data: JSONBody[SubscriptionCreate],
        client: ClientName,
        store: StoreDep,
        settings: SettingsDep,
        arq: ArqDep,
    ) -> Response[SubscriptionOut]:
        metadata = msgspec.json.encode(data.metadata if data.metadata is not None else {})
        if len(metadata) > METADATA_MAX_BYTES:
            raise ClientException(f"metadata is {len(metadata)} bytes; the limit is 4096 (4 KiB)")
        events = tuple(e for e in EVENT_STATUSES if data.events is None or e in data.events)
        await check_callback(data.callback_url, allow_private=settings.allow_private_callbacks)
        ws = settings.intuned_workspace_id
        rk = run_key(ws, data.project_name, data.run_id)
        doc = SubscriptionDoc(
            id=new_subscription_id(),
            client=client,
            workspace_id=ws,
            project_name=data.project_name,
            run_id=data.run_id,
            callback_url=data.callback_url,
            events=events,
            metadata=msgspec.Raw(metadata),
            created_at=now_ms(),
        )
        reg = await store.register(doc, rk)
        if reg.action == "poll":
            await enqueue(arq, "poll_now", rk, f"poll:{rk}")
        elif reg.action == "deliver":
            await enqueue(arq, "deliver_now", reg.subscription_id, f"deliver:{reg.subscription_id}")
        if reg.created:
            log.info(
                "subscription_created",
                client=client,
                subscription_id=reg.subscription_id,
                run_id=data.run_id,
                action=reg.action,
            )
        out = await load_out(store, reg.subscription_id, client)
        return Response(out, status_code=HTTP_201_CREATED if reg.created else HTTP_200_OK)

    @get("/{subscription_id:str}", summary="One subscription with its attempt log")
    async def read(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep
    ) -> SubscriptionOut:
        return await load_out(store, subscription_id, client)

    @get("/", summary="The client's subscriptions, newest first")
    async def list_(
        self,
        client: ClientName,
        store: StoreDep,
        run_id: Annotated[str | None, QueryParameter(name="runId", max_length=128)] = None,
        state_: Annotated[SubState | None, QueryParameter(name="state")] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(name="cursor", max_length=512)] = None,
    ) -> SubscriptionPage:
        try:
            page = await store.list_subscriptions(
                client, state=state_, limit=limit, cursor=cursor, run_id=run_id
            )
        except ValueError as exc:
            raise ClientException(f"cursor: {exc}") from None
        statuses = await store.run_statuses(
            [run_key(s.doc.workspace_id, s.doc.project_name, s.doc.run_id) for s in page.items]
        )
        return SubscriptionPage(
            items=[subscription_out(s, st) for s, st in zip(page.items, statuses, strict=True)],
            next_cursor=page.next_cursor,
        )

    @delete("/{subscription_id:str}", summary="Cancel: no further deliveries")
    async def cancel(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep
    ) -> None:
        if not await store.cancel(subscription_id, client, now_ms()):
            raise NotFoundException(f"no subscription {subscription_id}")
        log.info("subscription_canceled", client=client, subscription_id=subscription_id)

    @post(
        "/{subscription_id:str}/redeliver",
        status_code=HTTP_202_ACCEPTED,
        summary="Send the event again (same webhook-id) with a fresh attempt series",
    )
    async def redeliver(
        self, subscription_id: FromPath[str], client: ClientName, store: StoreDep, arq: ArqDep
    ) -> SubscriptionOut:
        res = await store.redeliver(subscription_id, client, now_ms())
        if res == "not_found":
            raise NotFoundException(f"no subscription {subscription_id}")
        if res.startswith("conflict:"):
            state = res.partition(":")[2]
            raise ConflictException(
                f"subscription is {state}: only a terminal run's event can be redelivered"
            )
        with contextlib.suppress(Exception):
            await enqueue(arq, "deliver_now", subscription_id, f"deliver:{subscription_id}")
        log.info("redeliver", client=client, subscription_id=subscription_id)
        return await load_out(store, subscription_id, client)
