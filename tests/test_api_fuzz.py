"""Fuzzing the API with schemathesis against its own /schema/openapi.json.

With a valid key: no 5xx, and every response (status, content type, body, headers) is what the
document says. With another client's key, a wrong key, or none: nothing of alpha's shows up, and
alpha's data is unchanged. The default run is bounded (a few seconds, derandomized); the slow run
(``uv run pytest -m slow -n 0 tests/test_api_fuzz.py -s``) generates well over 1,000 cases.

The app runs in-process through schemathesis's ASGI transport, which runs the app's lifespan
(Redis and arq pools) in its own event loop thread; Redis is the suite's real one.
``positive_data_acceptance`` is not checked: the API validates beyond the schema on purpose (the
callback host must resolve to an allowed address; a cursor must be one it issued), so a
schema-valid request may rightly get a 400.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from relay.model import run_key
from relay.store import keys as store_keys
from relay.store import run_digest
from tests.support.api_helpers import api_env, make_app, public_dns, snapshot
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, AUTH_BETA
from tests.support.store_helpers import finish_run, open_stores

SCHEMA_PATH = "/schema/openapi.json"
SUB_ID = "subscription_id"
# A valid test delivery POSTs to its URL at once, and public_dns makes every name a public
# address: with a key that is accepted, only invalid bodies are generated for it (no traffic
# ever leaves loopback).
SENDS_NOW = "/v1/test-deliveries"


@dataclass
class Alpha:
    """What client alpha owns before the fuzzing starts, and the strings that would betray it."""

    token: str
    subscription_ids: list[str]
    runs: list[tuple[str, str]]  # (projectName, runId)
    secret: str

    @property
    def markers(self) -> list[str]:
        """Strings that must never reach another client (unless it sent them itself)."""
        return [self.token, self.secret, *self.subscription_ids]


@dataclass
class Tally:
    """What one fuzzing session sent and got."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)

    def add(self, label: str, status: int) -> None:
        self.cases += 1
        self.statuses[status] += 1
        self.by_operation[label] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@pytest.fixture
def app(redis_sync: redis.Redis, redis_url: str) -> Iterator[Litestar]:
    """The relay with default SSRF rules and a resolver that maps every name to a public IP."""
    yield make_app(api_env(redis_url, RELAY_ALLOW_PRIVATE_CALLBACKS="false"), public_dns)
    asgi.shutdown_lifespans()


async def _finish_run(redis_url: str, project: str, run: str, result: bytes) -> None:
    """Record a terminal Intuned result for a watched run, as a worker's poll would."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await finish_run(open_stores(client), run_key(project, run), "completed", result)
    finally:
        await client.aclose()


def seed_alpha(app: Litestar, redis_url: str) -> Alpha:
    """Alpha: one watched run, one completed run (result cached), a secret; all via the API."""
    token = "alphaMark" + secrets.token_hex(6)
    runs = [(f"proj-{token}", f"watch-{token}"), (f"proj-{token}", f"done-{token}")]
    sids = []
    with asgi.get_client(app) as client:
        for project, run in runs:
            resp = client.post(
                "/v1/subscriptions",
                json={
                    "projectName": project,
                    "runId": run,
                    "callbackUrl": f"https://hooks.example/{token}",
                    "metadata": {"owner": token},
                },
                headers=AUTH_ALPHA,
            )
            assert resp.status_code == 201, resp.text
            sids.append(resp.json()["id"])
        secret = client.get("/v1/signing-secret", headers=AUTH_ALPHA).json()["secret"]
    project, run = runs[1]
    result = msgspec.json.encode({"runId": run, "status": "completed", "result": {"k": token}})
    asyncio.run(_finish_run(redis_url, project, run, result))
    return Alpha(token=token, subscription_ids=sids, runs=runs, secret=secret)


def alpha_state(r: redis.Redis, alpha: Alpha) -> dict[str, Any]:
    """Everything stored about alpha (without TTLs), to compare before and after."""
    keys = [k.decode() for k in r.scan_iter(match=store_keys.client_prefix("alpha") + "*")]
    for project, run in alpha.runs:
        rd = run_digest(run_key(project, run))
        keys += [store_keys.watch(rd), store_keys.subscribers(rd)]
    for sid in alpha.subscription_ids:
        keys += [store_keys.sub(sid), store_keys.attempts(sid)]
    return snapshot(r, keys)


def fuzz(
    app: Litestar,
    alpha: Alpha,
    *,
    headers: dict[str, str] | None,
    max_examples: int,
    derandomize: bool,
    negative: bool,
    on_response: Any = None,
) -> Tally:
    """Run every operation of the document through Hypothesis; alpha's ids are among the inputs."""
    schema = schemathesis.openapi.from_asgi(SCHEMA_PATH, app)
    if headers is not None:
        schema.config.update(headers=headers)
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so the other routes also meet alpha's subscriptions before they are canceled.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        modes = [GenerationMode.POSITIVE]
        if operation.path == SENDS_NOW and headers in (AUTH_ALPHA, AUTH_BETA):
            modes = []
        # Negative data needs something that can be invalid: a body or constrained query.
        if negative and (operation.body or operation.query):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            strategies = [operation.as_strategy(generation_mode=mode)]
            if SUB_ID in operation.path:
                strategies += [
                    operation.as_strategy(generation_mode=mode, path_parameters={SUB_ID: sid})
                    for sid in alpha.subscription_ids
                ]
            if "{projectName}" in operation.path:
                strategies += [
                    operation.as_strategy(
                        generation_mode=mode, path_parameters={"projectName": p, "runId": r}
                    )
                    for p, r in alpha.runs
                ]

            @given(case=st.one_of(strategies))
            @settings(
                max_examples=max_examples,
                derandomize=derandomize,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            def run_case(case: Any) -> None:
                response = case.call()
                tally.add(case.operation.label, response.status_code)
                case.validate_response(response, excluded_checks=[positive_data_acceptance])
                if on_response is not None:
                    on_response(case, response)

            run_case()
    return tally


def assert_no_leak(alpha: Alpha, case: Any, response: Any) -> None:
    """Nothing of alpha's in the response, unless the request itself carried it."""
    sent = f"{response.request.url} {response.request.body!r} {response.request.headers}"
    seen = f"{response.text} {dict(response.headers)}"
    for marker in alpha.markers:
        assert marker not in seen or marker in sent, (marker, response.text)
    assert ALPHA_KEY not in seen


def _valid_key_session(app: Litestar, redis_url: str, budget: int, derandomize: bool) -> Tally:
    alpha = seed_alpha(app, redis_url)
    tally = fuzz(
        app, alpha, headers=AUTH_ALPHA, max_examples=budget, derandomize=derandomize, negative=True
    )
    print(
        f"\nfuzz, valid key: {tally.cases} cases, statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert tally.server_errors == 0
    return tally


def test_fuzz_with_a_valid_key_bounded(app: Litestar, redis_url: str) -> None:
    tally = _valid_key_session(app, redis_url, budget=12, derandomize=True)
    assert len(tally.by_operation) >= 10  # every route of the document was exercised
    # alpha's own ids were among the inputs: the success paths ran, not only the 404s
    assert {200, 201, 202, 204, 400, 404} <= set(tally.statuses)


@pytest.mark.slow
def test_fuzz_with_a_valid_key_over_a_thousand_cases(app: Litestar, redis_url: str) -> None:
    tally = _valid_key_session(app, redis_url, budget=150, derandomize=False)
    assert tally.cases >= 1000
    print(f"by operation: {dict(tally.by_operation)}")


OTHER_KEYS: list[tuple[str, dict[str, str] | None]] = [
    ("beta's key", AUTH_BETA),
    ("unknown key", {"Authorization": "Bearer not-a-key-0123456789abcdef"}),
    ("alpha's key as Basic", {"Authorization": f"Basic {ALPHA_KEY}"}),
    ("no key", None),
]


def _other_key_session(
    app: Litestar,
    redis_sync: redis.Redis,
    redis_url: str,
    headers: dict[str, str] | None,
    budget: int,
    derandomize: bool,
) -> Tally:
    alpha = seed_alpha(app, redis_url)
    before = alpha_state(redis_sync, alpha)
    is_beta = headers == AUTH_BETA

    def check(case: Any, response: Any) -> None:
        assert_no_leak(alpha, case, response)
        path = response.request.path_url
        # Intuned's push ingress takes no bearer key: its token and secret header are checked
        # (tests/test_ingress.py); a fuzzed token is unknown (404), never a bearer 401.
        v1 = path.startswith("/v1/") and not path.startswith("/v1/ingress/")
        detail = response.json().get("detail") if response.content else None
        routed = detail not in ("Not Found", "Method Not Allowed")
        if v1 and routed and not is_beta:
            assert response.status_code == 401, response.text
        if (
            is_beta
            and case.path_parameters
            and (
                case.path_parameters.get(SUB_ID) in alpha.subscription_ids
                or (case.path_parameters.get("projectName"), case.path_parameters.get("runId"))
                in alpha.runs
            )
        ):
            assert response.status_code == 404, response.text

    tally = fuzz(
        app,
        alpha,
        headers=headers,
        max_examples=budget,
        derandomize=derandomize,
        negative=False,
        on_response=check,
    )
    print(f"\nfuzz, {headers}: {tally.cases} cases, {dict(sorted(tally.statuses.items()))}")
    assert tally.server_errors == 0
    assert alpha_state(redis_sync, alpha) == before
    return tally


@pytest.mark.parametrize(
    "headers", [h for _, h in OTHER_KEYS], ids=[name for name, _ in OTHER_KEYS]
)
def test_fuzz_with_other_keys_leaks_nothing_bounded(
    app: Litestar, redis_sync: redis.Redis, redis_url: str, headers: dict[str, str] | None
) -> None:
    _other_key_session(app, redis_sync, redis_url, headers, budget=6, derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers", [h for _, h in OTHER_KEYS], ids=[name for name, _ in OTHER_KEYS]
)
def test_fuzz_with_other_keys_leaks_nothing(
    app: Litestar, redis_sync: redis.Redis, redis_url: str, headers: dict[str, str] | None
) -> None:
    tally = _other_key_session(app, redis_sync, redis_url, headers, budget=60, derandomize=False)
    assert tally.cases >= 300
