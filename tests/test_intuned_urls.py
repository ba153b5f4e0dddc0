"""The request paths of the Intuned client: every name percent-encoded once, under the base.

Sub-delimiters of a name (``&``, ``'``) stay percent-encoded as ``quote`` writes them (before
the URL seam of ``IntunedClient._url``, yarl's re-quoting sent them decoded)."""

from __future__ import annotations

import pytest

from relay.intuned.client import IntunedClient
from relay.intuned.models import NotFoundOutcome
from tests.support.intuned_fixtures import FAKE_API_KEY
from tests.support.listener import scripted_http_listener

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
ODD_WS, ODD_PROJECT = "w s/ü", "p %25 ü?#&\"'"
ODD_WS_PATH = "/api/v1/w%20s%2F%C3%BC"
ODD_PROJECT_PATH = "/projects/p%20%2525%20%C3%BC%3F%23%26%22%27"


@pytest.mark.parametrize(
    ("base", "workspace", "project", "run_id", "path"),
    [
        ("/api/v1", "ws", "demo-project", "r-1", "/api/v1/ws/projects/demo-project/run/r-1"),
        ("/api/v1/", ODD_WS, ODD_PROJECT, "R_2-x", f"{ODD_WS_PATH}{ODD_PROJECT_PATH}/run/R_2-x"),
        ("", "ws", "a.b~c", "r", "/ws/projects/a.b~c/run/r"),
    ],
)
async def test_a_result_request_path_has_every_name_encoded_once(
    base: str, workspace: str, project: str, run_id: str, path: str
) -> None:
    result = f"{path}/result"
    async with scripted_http_listener({result: NOT_FOUND}) as (port, requested):
        root = f"http://127.0.0.1:{port}{base}"
        async with IntunedClient(root, workspace, FAKE_API_KEY) as client:
            outcome = await client.get_result(project, run_id)
            await client.start(project, b"{}")  # no answer: only the path is looked at
    assert isinstance(outcome, NotFoundOutcome)
    assert requested == [result, path.rsplit("/run/", 1)[0] + "/run/start"]
