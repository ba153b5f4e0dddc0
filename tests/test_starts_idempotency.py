"""POST /v1/runs: one start at Intuned per Idempotency-Key, whatever the client repeats.

The API runs in-process on the suite's Redis; Intuned is the fake on a loopback socket, which
counts every start request it receives (``stats().start_requests``): that count is what each test
pins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, Fault
from relay.model import StartKeyState
from relay.services.starts import fingerprint, key_hash
from relay.store import keys
from relay.store.keys import StartKeyField
from tests.support.api_helpers import api_client
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA, base_env, wait_until

RUNS = "/v1/runs"
PUBLIC = "https://relay.example.test"
CALLBACK = "http://127.0.0.1:9/hook"


def start_body(**extra: Any) -> dict[str, Any]:
    """A valid start-and-watch body: relay fields plus Intuned's required start fields."""
    return {
        "projectName": "demo-project",
        "callbackUrl": CALLBACK,
        "api": "scrape/prices",
        "parameters": {"sku": 7},
        **extra,
    }


def key(value: str) -> dict[str, str]:
    return {**AUTH_ALPHA, "Idempotency-Key": value}


def _api(
    redis_url: str, fake: FakeIntunedHandle, intuned_timeout: str
) -> AbstractAsyncContextManager[AsyncTestClient[Any]]:
    """The API in-process, with Intuned given ``intuned_timeout``."""
    env = base_env(redis_url, fake.base_url)
    return api_client({**env, "RELAY_PUBLIC_URL": PUBLIC, "RELAY_INTUNED_TIMEOUT": intuned_timeout})


@pytest.fixture
async def api(
    redis_sync: redis.Redis, redis_url: str, fake_intuned: FakeIntunedHandle
) -> AsyncIterator[AsyncTestClient[Any]]:
    # The suite's 1 s for Intuned can be a slow start's on a loaded machine: only the test of a
    # timeout keeps it.
    async with _api(redis_url, fake_intuned, "10s") as client:
        yield client


def starts(fake: FakeIntunedHandle) -> int:
    return fake.state.stats().start_requests


def subscriptions_stored(r: redis.Redis) -> int:
    return sum(1 for k in r.scan_iter(match="r:{s:*") if not k.endswith(b":a"))


async def test_a_start_registers_the_run_and_answers_201_with_its_subscription(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    body = start_body(metadata={"order": 1}, saveTrace=False, futureField={"n": 1})
    resp = await api.post(RUNS, json=body, headers=key("k-1"))
    assert resp.status_code == 201, resp.text
    out = resp.json()
    [started] = fake_intuned.state.start_log()
    assert out["runId"] == started["runId"] and out["status"] == "pending"
    sub = out["subscription"]
    assert sub["runId"] == out["runId"] and sub["state"] == "watching"
    assert sub["callbackUrl"] == CALLBACK and sub["metadata"] == {"order": 1}
    view = await api.get(f"/v1/subscriptions/{sub['id']}", headers=AUTH_ALPHA)
    assert view.status_code == 200 and view.json()["runId"] == out["runId"]
    assert subscriptions_stored(redis_sync) == 1
    # Intuned's fields went through unchanged (unknown ones too); the relay's stayed home.
    sent = started["body"]
    assert sent["api"] == "scrape/prices" and sent["parameters"] == {"sku": 7}
    assert sent["saveTrace"] is False and sent["futureField"] == {"n": 1}
    assert not {"projectName", "callbackUrl", "metadata", "events"} & set(sent)
    sink = sent["sink"]
    assert sink["type"] == "webhook"
    assert sink["url"].startswith(f"{PUBLIC}/v1/ingress/intuned/")
    [(name, secret)] = sink["headers"].items()
    assert name == "x-relay-ingress-secret" and len(secret) >= 32
    assert secret not in resp.text


async def test_the_same_key_again_answers_the_first_answer_without_a_second_start(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    first = await api.post(RUNS, json=start_body(), headers=key("k-repeat"))
    assert first.status_code == 201
    # Key order does not make another body.
    again = await api.post(
        RUNS, content=json.dumps(dict(reversed(start_body().items()))), headers=key("k-repeat")
    )
    assert (again.status_code, again.content) == (201, first.content)
    assert starts(fake_intuned) == 1
    # Another client's identical key is its own key.
    other = await api.post(
        RUNS, json=start_body(), headers={**AUTH_BETA, "Idempotency-Key": "k-repeat"}
    )
    assert other.status_code == 201 and other.json()["runId"] != first.json()["runId"]
    assert starts(fake_intuned) == 2


async def test_the_same_key_with_another_body_is_409_and_starts_nothing(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    assert (await api.post(RUNS, json=start_body(), headers=key("k-body"))).status_code == 201
    resp = await api.post(RUNS, json=start_body(parameters={"sku": 8}), headers=key("k-body"))
    assert resp.status_code == 409
    assert resp.json()["code"] == "idempotency_key_reused"
    assert starts(fake_intuned) == 1


async def test_concurrent_requests_with_one_key_start_one_run(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    fake_intuned.state.add_fault(Fault(kind="slow", endpoint="start", delay_ms=400))
    answers = await asyncio.gather(
        *(api.post(RUNS, json=start_body(), headers=key("k-race")) for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}, codes
    assert all(a.json()["code"] == "in_progress" for a in answers if a.status_code == 409)
    assert len({a.json()["runId"] for a in answers if a.status_code == 201}) == 1
    assert starts(fake_intuned) == 1


async def test_intuned_4xx_is_passed_on_registers_nothing_and_sticks_to_the_key(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    bad = start_body(parameters="not an object")
    resp = await api.post(RUNS, json=bad, headers=key("k-4xx"))
    assert resp.status_code == 400, resp.text
    out = resp.json()
    assert "Intuned refused" in out["detail"]
    assert out["intuned"]["code"] == "bad-request"
    again = await api.post(RUNS, json=bad, headers=key("k-4xx"))
    assert (again.status_code, again.content) == (400, resp.content)
    assert starts(fake_intuned) == 1
    assert subscriptions_stored(redis_sync) == 0


async def test_intuneds_429_passes_its_retry_after_on_and_its_repeat_does_not(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    fake_intuned.state.add_fault(Fault(kind="rate_limited", endpoint="start", retry_after="7"))
    first = await api.post(RUNS, json=start_body(), headers=key("k-429"))
    assert first.status_code == 429, first.text
    assert first.headers.get("retry-after") == "7"
    assert first.json()["intuned"] is not None
    # The same key answers the same again, but it cannot know how much of the wait is left.
    again = await api.post(RUNS, json=start_body(), headers=key("k-429"))
    assert (again.status_code, again.content) == (429, first.content)
    assert "retry-after" not in again.headers
    assert starts(fake_intuned) == 1  # the repeat did not ask Intuned


async def test_intuned_5xx_is_502_kept_under_its_key_and_a_new_key_starts(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    fake_intuned.state.add_fault(Fault(kind="error_500", endpoint="start"))
    resp = await api.post(RUNS, json=start_body(), headers=key("k-5xx"))
    assert resp.status_code == 502, resp.text
    assert resp.json()["startOutcome"] == "not_started"
    # Contract §7: the same key again is the first answer again, without calling Intuned.
    again = await api.post(RUNS, json=start_body(), headers=key("k-5xx"))
    assert (again.status_code, again.content) == (502, resp.content)
    assert starts(fake_intuned) == 1
    retry = await api.post(RUNS, json=start_body(), headers=key("k-5xx-retry"))
    assert retry.status_code == 201
    assert starts(fake_intuned) == 2
    assert len(fake_intuned.state.start_log()) == 1  # one run exists


async def test_a_timeout_after_sending_is_unknown_for_the_keys_lifetime(
    redis_url: str, fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    # Intuned is given 1 s; the fake starts the run and answers after 3 s.
    fake_intuned.state.add_fault(Fault(kind="hang", endpoint="start", delay_ms=3000))
    async with _api(redis_url, fake_intuned, "1s") as api:
        resp = await api.post(RUNS, json=start_body(), headers=key("k-unknown"))
        assert resp.status_code == 502, resp.text
        assert resp.json()["startOutcome"] == "unknown"
        for _ in range(2):
            again = await api.post(RUNS, json=start_body(), headers=key("k-unknown"))
            assert again.status_code == 409
            assert again.json()["code"] == "start_outcome_unknown"
        await wait_until(lambda: starts(fake_intuned) >= 1)  # the fake counts once it answered
        await asyncio.sleep(0.2)
        assert starts(fake_intuned) == 1
        assert len(fake_intuned.state.start_log()) == 1  # the run exists; the relay never knew it
        assert subscriptions_stored(redis_sync) == 0


@pytest.mark.parametrize(
    ("headers", "body", "words"),
    [
        (AUTH_ALPHA, start_body(), "Idempotency-Key header is required"),
        ({**AUTH_ALPHA, "Idempotency-Key": "has space"}, start_body(), "visible ASCII"),
        ({**AUTH_ALPHA, "Idempotency-Key": "k" * 256}, start_body(), "1-255"),
        (key("k-sink"), start_body(sink={"type": "webhook", "url": "http://x"}), "sink"),
        (key("k-proj"), {**start_body(), "projectName": "a/b"}, "projectName"),
        (key("k-ev"), start_body(events=["finished"]), "events"),
        (key("k-cb"), start_body(callbackUrl="ftp://x"), "callbackUrl"),
        (key("k-meta"), start_body(metadata={"x": "y" * 5000}), "metadata"),
    ],
)
async def test_bad_requests_are_400_before_any_start(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    redis_sync: redis.Redis,
    headers: dict[str, str],
    body: dict[str, Any],
    words: str,
) -> None:
    resp = await api.post(RUNS, json=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert words in resp.json()["detail"]
    assert starts(fake_intuned) == 0
    assert not list(redis_sync.scan_iter(match="r:*"))


async def test_without_a_bearer_key_nothing_happens(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle
) -> None:
    resp = await api.post(RUNS, json=start_body(), headers={"Idempotency-Key": "k"})
    assert resp.status_code == 401
    assert starts(fake_intuned) == 0


async def test_without_a_public_url_no_sink_is_added_and_the_callers_sink_goes_through(
    redis_sync: redis.Redis, redis_url: str, fake_intuned: FakeIntunedHandle
) -> None:
    async with api_client(base_env(redis_url, fake_intuned.base_url)) as api:
        plain = await api.post(RUNS, json=start_body(), headers=key("k-plain"))
        assert plain.status_code == 201, plain.text
        own = {"type": "webhook", "url": "http://127.0.0.1:9/mine", "headers": {"a": "b"}}
        mine = await api.post(RUNS, json=start_body(sink=own), headers=key("k-own-sink"))
        assert mine.status_code == 201, mine.text
    first, second = fake_intuned.state.start_log()
    assert "sink" not in first["body"]
    assert second["body"]["sink"] == own


@pytest.mark.parametrize(
    ("taken_ago_ms", "code"), [(0, "in_progress"), (60_000, "start_outcome_unknown")]
)
async def test_a_key_held_by_a_request_that_never_finished_is_never_started_again(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    redis_sync: redis.Redis,
    taken_ago_ms: int,
    code: str,
) -> None:
    """A pending key is another request still starting; once it is older than that request
    could take (its process died between Intuned's answer and the relay's record), whether a
    run exists is unknown, and stays so."""
    body = start_body()
    seconds, micros = redis_sync.time()
    taken = seconds * 1000 + micros // 1000 - taken_ago_ms
    record = keys.start_key("alpha", key_hash("k-held"))
    fields = {
        StartKeyField.STATE: StartKeyState.PENDING.value,
        StartKeyField.FINGERPRINT: fingerprint(json.dumps(body).encode()),
        StartKeyField.TAKEN: taken,
    }
    redis_sync.hset(record, mapping=fields)  # type: ignore[arg-type]
    resp = await api.post(RUNS, json=body, headers=key("k-held"))
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == code
    assert starts(fake_intuned) == 0
