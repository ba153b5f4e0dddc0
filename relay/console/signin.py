"""``/console/sign-in`` and ``/console/sign-out``: the only console routes without a session.

A failed sign-in is counted against the client's address; past RELAY_CONSOLE_SIGNIN_LIMIT in
five minutes the form answers 429 (before the key is even compared). This module must never
log or echo the key typed in.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from relay.console.auth import (
    SIGNIN_STORE,
    SignInLimiter,
    client_for_key,
    signed_in_client,
    start_session,
)
from relay.console.errors import error_page
from relay.console.views import NOTICES
from relay.settings import Settings

log = structlog.get_logger("relay.console")


class SignInForm(msgspec.Struct, frozen=True):
    """The sign-in form's field (the CSRF token is checked by the middleware)."""

    api_key: Annotated[str, msgspec.Meta(max_length=512)] = ""


def _form(status: int = 200, error: str | None = None, notice: str | None = None) -> Template:
    return Template(
        template_name="sign_in.html",
        context={"client": None, "error": error, "notice": notice},
        status_code=status,
    )


class SignIn(Controller):
    """Sign in with an API key; sign out."""

    path = "/"

    @get("/sign-in", name="console:sign-in")
    async def form(
        self,
        request: Request[Any, Any, Any],
        done: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template | Redirect:
        if signed_in_client(request) is not None:
            return Redirect("/console", status_code=HTTP_303_SEE_OTHER)
        request.clear_session()  # nothing is stored for an anonymous visitor
        return _form(notice=NOTICES.get(done or ""))

    @post("/sign-in", name="console:sign-in-post", status_code=HTTP_303_SEE_OTHER)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        state: State,
        data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        settings: Settings = state.settings
        limiter = SignInLimiter(request.app.stores.get(SIGNIN_STORE), settings.console_signin_limit)
        address = request.client.host if request.client else "unknown"
        now = time.time()
        wait = await limiter.retry_after(address, now)
        if wait is not None:
            request.clear_session()
            return error_page(
                429,
                f"Too many failed sign-ins from your address; try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        client = client_for_key(data.api_key.strip(), settings) if data.api_key else None
        if client is None:
            await limiter.failed(address, now)
            request.clear_session()
            log.info("console_sign_in_refused", address=address)
            return _form(401, error="That API key is not valid.")
        start_session(request, client, data.api_key.strip())
        log.info("console_signed_in", client=client)
        return Redirect("/console", status_code=HTTP_303_SEE_OTHER)

    @post("/sign-out", name="console:sign-out", status_code=HTTP_303_SEE_OTHER)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Redirect:
        client = signed_in_client(request)
        request.clear_session()  # deletes the session from the store, not only the cookie
        if client is not None:
            log.info("console_signed_out", client=client)
        return Redirect("/console/sign-in?done=signed-out", status_code=HTTP_303_SEE_OTHER)
