"""Helpers for the console's HTTP tests: sign in through the form, read a page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

from httpx import Response
from litestar.testing import AsyncTestClient

_TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_of(page: Response) -> str:
    """The CSRF token of the first form on ``page``."""
    match = _TOKEN.search(page.text)
    assert match is not None, f"no form with a CSRF token on {page.url}"
    return match.group(1)


async def sign_in(client: AsyncTestClient[Any], key: str) -> Response:
    """Fill and send the sign-in form (the response is not followed)."""
    form = await client.get("/console/sign-in")
    return await client.post(
        "/console/sign-in", data={"api_key": key, "_csrf_token": csrf_of(form)}
    )


async def post_form(
    client: AsyncTestClient[Any], page: str, action: str, **fields: str
) -> Response:
    """Open ``page`` for its CSRF token, then post ``fields`` to ``action``."""
    token = csrf_of(await client.get(page))
    return await client.post(action, data={**fields, "_csrf_token": token})
