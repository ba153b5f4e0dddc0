"""The one error path: what each relay error answers (status, JSON ``detail``, headers), how a
redis-py error is read, and that the routes raise the relay's errors rather than building bodies.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from redis import exceptions as rx

from relay import errors
from relay.api.responses import EXCEPTION_HANDLERS
from tests.support.api_helpers import api_client, api_env, body
from tests.support.relay_fixtures import AUTH_ALPHA

RAISED: dict[str, errors.RelayError] = {
    "invalid": errors.InvalidInput("limit: must be at most 200"),
    "refused": errors.CallbackRefused("callbackUrl must be an http:// or https:// URL"),
    "missing": errors.NotFound("no subscription sub_x"),
    "conflict": errors.Conflict("subscription is watching"),
    "quota": errors.QuotaExceeded(
        "RELAY_MAX_SUBSCRIPTIONS_PER_RUN", 1000, "this run has 1000 subscriptions"
    ),
    "unavailable": errors.Unavailable("storage is full", retry_after=30, cause="oom"),
    "config": errors.ConfigError("RELAY_X", "is wrong"),
}


@get("/raise/{name:str}")
async def raising(name: FromPath[str]) -> None:
    raise RAISED[name]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("invalid", 400),
        ("refused", 400),
        ("missing", 404),
        ("conflict", 409),
        ("quota", 429),
        ("unavailable", 503),
        ("config", 500),
    ],
)
async def test_each_relay_error_has_its_status_and_one_body_shape(name: str, status: int) -> None:
    app = Litestar([raising], exception_handlers=EXCEPTION_HANDLERS)
    async with AsyncTestClient(app) as client:
        resp = await client.get(f"/raise/{name}")
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    answer = resp.json()
    assert answer["statusCode"] == status and set(answer) == {"statusCode", "detail"}
    if status == 500:
        assert answer["detail"] == "internal error"  # not the configuration's words
    else:
        assert answer["detail"] == str(RAISED[name])
    assert ("retry-after" in resp.headers) == (status == 503)


def test_a_quota_error_names_the_limit_and_the_setting() -> None:
    text = str(RAISED["quota"])
    assert "1000" in text and "RELAY_MAX_SUBSCRIPTIONS_PER_RUN" in text


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (rx.ConnectionError("Error 111 connecting"), "connection"),
        (rx.TimeoutError("Timeout reading from socket"), "timeout"),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "oom"),
        (rx.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (rx.ResponseError("BUSY Redis is busy running a script."), "busy"),
        (
            rx.ResponseError(
                "Command # 1 (EVALSHA abc 1 k) of pipeline caused error: "
                "('BUSY Redis is busy running a script.',)"
            ),
            "busy",
        ),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), "error"),
    ],
)
def test_every_redis_error_is_unavailable_by_its_class(exc: rx.RedisError, cause: str) -> None:
    answer = errors.unavailable(exc)
    assert answer.cause == cause and answer.retry_after >= 1 and str(answer)


async def test_routes_answer_with_the_relay_errors(redis_url: str, redis_sync: redis.Redis) -> None:
    async with api_client(api_env(redis_url)) as api:
        missing = await api.get("/v1/subscriptions/sub_nothing", headers=AUTH_ALPHA)
        made = await api.post("/v1/subscriptions", json=body(), headers=AUTH_ALPHA)
        early = await api.post(
            f"/v1/subscriptions/{made.json()['id']}/redeliver", headers=AUTH_ALPHA
        )
        cursor = await api.get("/v1/subscriptions?cursor=nonsense", headers=AUTH_ALPHA)
        no_run = await api.get("/v1/runs/demo-project/other", headers=AUTH_ALPHA)
        empty = await api.post("/v1/subscriptions", content=b" ", headers=AUTH_ALPHA)
    answers: list[tuple[Any, int, str]] = [
        (missing, 404, "no subscription sub_nothing"),
        (early, 409, "only a terminal run's event can be redelivered"),
        (cursor, 400, "cursor:"),
        (no_run, 404, "no run demo-project/other"),
        (empty, 400, "the request body is empty"),
    ]
    for resp, status, words in answers:
        assert resp.status_code == status and words in resp.json()["detail"], resp.text
