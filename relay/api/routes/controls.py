"""``/v1/test-deliveries`` and ``/v1/operational-webhook`` (contract §6).

Handlers decode, call one service (``relay.services.test_delivery`` / ``.operational``) and
answer; every check, quota and send lives in the service. Header values are never shown back.
"""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, post, put
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.status_codes import HTTP_200_OK

from relay.api.bodies import STRICT_JSON_BODY, ClientBodyController, json_body_route
from relay.api.control_schemas import (
    OperationalWebhookIn,
    OperationalWebhookOut,
    TestDeliveryIn,
    TestDeliveryOut,
)
from relay.api.deps import ClientName, StoreDep, callback_lookup
from relay.api.responses import errors, validation_handler
from relay.api.schemas import CALLBACK_URL_RULE
from relay.services import operational
from relay.services.test_delivery import send_test
from relay.settings import Settings
from relay.store import OperationalHook
from relay.webhooks.custom_headers import redacted


class TestDeliveryController(ClientBodyController):
    """Send one signed ``relay.ping`` to a URL now."""

    path = "/v1/test-deliveries"
    tags = ["controls"]
    exception_handlers = {
        ValidationException: validation_handler(rules={"callbackUrl": CALLBACK_URL_RULE})
    }

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Send a signed relay.ping event to a URL now and report the outcome",
        description="The URL and headers are checked like a registration's (400 when refused). "
        "outcome is delivered (a 2xx), failed (anything else: statusCode/error say what) or "
        "refused (the address was refused at connect time; nothing was sent). At most "
        "RELAY_TEST_DELIVERIES_PER_MINUTE (10) a minute per client, then 429.",
        **json_body_route(TestDeliveryIn),
        responses=errors(400, 401, 429, 503),
    )
    async def send(
        self,
        data: Annotated[TestDeliveryIn, STRICT_JSON_BODY],
        client: ClientName,
        store: StoreDep,
        state: State,
    ) -> TestDeliveryOut:
        settings: Settings = state.settings
        result = await send_test(
            controls=store.controls,
            secrets=store.secrets,
            sender=state.test_sender,
            settings=settings,
            client=client,
            url=data.callback_url,
            headers=data.headers,
            lookup=callback_lookup(state),
        )
        return TestDeliveryOut(
            outcome=result.outcome,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            response_excerpt=result.response_excerpt,
            error=result.error,
        )


def _out(hook: OperationalHook) -> OperationalWebhookOut:
    return OperationalWebhookOut(url=hook.url, headers=redacted(hook.headers))


class OperationalWebhookController(ClientBodyController):
    """The client's operational webhook: where exhausted/gone subscriptions and a refused
    Intuned key are reported."""

    path = "/v1/operational-webhook"
    tags = ["controls"]
    exception_handlers = {ValidationException: validation_handler(rules={"url": CALLBACK_URL_RULE})}

    @put(
        "/",
        status_code=HTTP_200_OK,
        summary="Set the operational webhook",
        description="The relay POSTs signed subscription.exhausted, subscription.gone and "
        "intuned.unauthorized events here (same secret and retry schedule as run webhooks). "
        "The URL and headers are checked like a registration's.",
        **json_body_route(OperationalWebhookIn),
        responses=errors(400, 401, 503),
    )
    async def set_hook(
        self,
        data: Annotated[OperationalWebhookIn, STRICT_JSON_BODY],
        client: ClientName,
        store: StoreDep,
        state: State,
    ) -> OperationalWebhookOut:
        hook = await operational.configure(
            store.controls,
            store.secrets,
            state.settings,
            client,
            data.url,
            data.headers,
            callback_lookup(state),
        )
        return _out(hook)

    @get(
        "/",
        summary="The operational webhook (header values shown as ***)",
        responses=errors(401, 404, 503),
    )
    async def read(self, client: ClientName, store: StoreDep) -> OperationalWebhookOut:
        hook = await store.controls.operational_webhook(client)
        if hook is None:
            raise NotFoundException("no operational webhook is set")
        return _out(hook)

    @delete(
        "/",
        summary="Remove the operational webhook",
        description="204 also when none was set (idempotent).",
        responses=errors(401, 503),
    )
    async def remove(self, client: ClientName, store: StoreDep) -> None:
        await store.controls.delete_operational_webhook(client)
