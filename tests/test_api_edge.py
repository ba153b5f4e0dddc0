"""Small defects found by fuzzing from outside (issue 16 item 8), each pinned: list items and the
attempt log, ``OPTIONS``'s ``Allow`` header, the OpenAPI document's 503/405/413, and
``/metrics``'s content type. Plus the error renderer: what each relay error answers."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.api_helpers import api_client, api_env, body
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, subscription_state, wait_until
from tests.support.workers import StartInprocWorker

SUBS = "/v1/subscriptions"


@pytest.fixture
async def edge(redis_url: str, redis_sync: redis.Redis) -> Any:
    async with api_client(api_env(redis_url)) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (SUBS, "GET, OPTIONS, POST"),
        (f"{SUBS}/sub_abc", "DELETE, GET, OPTIONS"),
        (f"{SUBS}/sub_abc/redeliver", "OPTIONS, POST"),
        ("/v1/signing-secret", "GET, OPTIONS"),
        ("/readyz", "GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method_of_the_path(
    edge: AsyncTestClient[Any], path: str, allow: str
) -> None:
    resp = await edge.options(path, headers=AUTH_ALPHA)
    assert resp.status_code == 204
    assert resp.headers["allow"] == allow


async def test_metrics_content_type_has_one_charset(edge: AsyncTestClient[Any]) -> None:
    content_type = (await edge.get("/metrics")).headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=utf-8") == 1


async def test_openapi_declares_the_503_405_and_413_the_api_answers(
    edge: AsyncTestClient[Any],
) -> None:
    paths = (await edge.get("/schema/openapi.json")).json()["paths"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    one = f"{SUBS}/{{subscription_id}}"
    # An empty id makes the path another route's, which takes no DELETE or POST: 405.
    assert "405" in paths[one]["delete"]["responses"]
    assert (await edge.delete(f"{SUBS}/", headers=AUTH_ALPHA)).status_code == 405
    assert "405" in paths[f"{one}/redeliver"]["post"]["responses"]
    # (With an empty id the path is the bulk redeliver's, which takes POST only.)
    assert (await edge.put(f"{SUBS}//redeliver", headers=AUTH_ALPHA)).status_code == 405
    # The id `redeliver` names the bulk redeliver's path too: GET and DELETE are 405s there.
    assert "405" in paths[one]["get"]["responses"]
    for method in ("GET", "DELETE"):
        resp = await edge.request(method, f"{SUBS}/redeliver", headers=AUTH_ALPHA)
        assert resp.status_code == 405, (method, resp.text)
    assert "413" in paths[SUBS]["post"]["responses"]
    huge = b'{"projectName": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    resp = await edge.post(SUBS, content=huge, headers=AUTH_ALPHA)
    assert resp.status_code == 413 and resp.json()["detail"]
    # Every /v1 operation says Redis may be unavailable.
    for path, item in paths.items():
        for method, op in item.items():
            if path.startswith("/v1/") and method in ("get", "post", "delete"):
                assert "503" in op["responses"], (method, path)


async def test_list_items_carry_no_attempt_log_and_one_subscription_does(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result={"a": 1}))
    url = receiver.url("/flaky/1/list")  # the first attempt fails, the second is delivered
    resp = await api.post(SUBS, json=body(run=run_id, url=url), headers=AUTH_ALPHA)
    sid = resp.json()["id"]
    await start_inproc_worker()

    async def delivered() -> bool:
        return await subscription_state(api, sid, AUTH_ALPHA) == "delivered"

    await wait_until(delivered, timeout=20)
    one = (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()
    assert [a["attempt"] for a in one["attempts"]] == [1, 2]
    [item] = (await api.get(SUBS, headers=AUTH_ALPHA)).json()["items"]
    assert item["id"] == sid and item["state"] == "delivered"
    assert "attempts" not in item  # absent, not an empty list that would say "none yet"
    schema = (await api.get("/schema/openapi.json")).json()["components"]["schemas"]
    page_items = schema["SubscriptionPage"]["properties"]["items"]["items"]["$ref"]
    assert "attempts" not in schema[page_items.rsplit("/", 1)[1]]["properties"]
    assert "attempts" in schema["SubscriptionOut"]["properties"]
