"""POST /v1/subscriptions refuses every malformed field with a readable 400, storing nothing.

Also: the default settings refuse private callback addresses, registration is idempotent per
client, and every /v1 route wants a valid key while the operational routes do not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from litestar.testing import AsyncTestClient

from relay.store import keys
from tests.support.api_helpers import (
    MIXED_HOST,
    PRIVATE_HOST,
    PUBLIC_URL,
    api_client,
    api_env,
    body,
    stored_keys,
)
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, AUTH_BETA

SUBS = "/v1/subscriptions"
# One app per module (its lifespan costs ~0.15 s); Redis is still flushed for every test.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dev_app(redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(api_env(redis_url)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict_app(redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(api_env(redis_url, RELAY_ALLOW_PRIVATE_CALLBACKS="false")) as client:
        yield client


@pytest.fixture
def api(dev_app: AsyncTestClient[Any], redis_sync: redis.Redis) -> AsyncTestClient[Any]:
    """The API with private callbacks allowed (as in development), on a flushed Redis."""
    return dev_app


@pytest.fixture
def strict_api(strict_app: AsyncTestClient[Any], redis_sync: redis.Redis) -> AsyncTestClient[Any]:
    """The API with the default RELAY_ALLOW_PRIVATE_CALLBACKS=false, on a flushed Redis."""
    return strict_app


def assert_refused(resp: Any, *words: str, status: int = 400) -> str:
    """A JSON error with ``status`` whose ``detail`` mentions every one of ``words``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    payload = resp.json()
    assert payload["statusCode"] == status
    detail = payload["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word.lower() in detail.lower(), detail
    return str(detail)


def without(field: str) -> dict[str, Any]:
    valid = body()
    del valid[field]
    return valid


def bad(field: str, values: dict[str, Any], word: str = "") -> list[tuple[str, Any, str]]:
    """One case per value of ``field`` (its camelCase name) by label; the detail must contain
    ``word`` (by default the field's name)."""
    return [(f"{field} {label}", body() | {field: v}, word or field) for label, v in values.items()]


BAD_BODIES: list[tuple[str, Any, str]] = [
    # (case id, body, a word the detail must contain)
    ("missing projectName", without("projectName"), "projectName"),
    ("missing runId", without("runId"), "runId"),
    ("missing callbackUrl", without("callbackUrl"), "callbackUrl"),
    ("unknown field", body(priority=1), "priority"),
    ("unknown camel-cased twin", body(project_name="x"), "project_name"),
    ("body is an array", [body()], "object"),
    ("body is a string", "hello", "object"),
    ("body is null", None, "object"),
    ("body is a number", 7, "object"),
    *bad(
        "projectName",
        {
            "number": 7,
            "null": None,
            "empty": "",
            "slash": "a/b",
            "backslash": "a\\b",
            "NUL": "a\x00b",
            "newline inside": "a\nb",
            "trailing newline": "demo\n",
            "DEL": "a\x7fb",
            "C1 control": "a\x85b",
            "dot": ".",
            "dot-dot": "..",
            "201 chars": "p" * 201,
        },
    ),
    *bad(
        "runId",
        {
            "number": 12,
            "empty": "",
            "space": "a b",
            "slash": "a/b",
            "dot": "a.b",
            "percent": "a%2Fb",
            "non-ascii": "rün",
            "trailing newline": "abc\n",
            "129 chars": "r" * 129,
        },
    ),
    *bad(
        "callbackUrl",
        {
            "number": 5,
            "array": [PUBLIC_URL],
            "empty": "",
            "longer than 2048": PUBLIC_URL + "?" + "a" * 2048,
        },
    ),
    *bad(
        "callbackUrl",
        {
            "ftp": "ftp://hooks.example/x",
            "javascript": "javascript:alert(1)//",
            "file": "file:///etc/passwd",
            "no scheme": "hooks.example/hook",
        },
        "http",
    ),
    ("callbackUrl no host", body(url="http:///hook"), "host"),
    ("callbackUrl userinfo", body(url="https://user:pw@hooks.example/"), "user"),
    ("callbackUrl empty userinfo", body(url="https://@hooks.example/"), "user"),
    ("callbackUrl port 0", body(url="https://hooks.example:0/"), "port"),
    ("callbackUrl port too big", body(url="https://hooks.example:70000/"), "port"),
    ("callbackUrl space", body(url="https://hooks.example/a b"), "whitespace"),
    ("callbackUrl unresolvable", body(url="https://nowhere.invalid/hook"), "does not resolve"),
    *bad(
        "events",
        {
            "empty": [],
            "unknown value": ["completed", "done"],
            "string": "completed",
            "numbers": [1],
            "object": {"completed": True},
            "too many": ["completed"] * 5,
        },
    ),
    *bad("metadata", {"array": [1, 2], "string": "x", "number": 1}),
    ("metadata over 4 KiB", body(metadata={"k": "x" * 4090}), "4096"),
]


@pytest.mark.parametrize(
    ("payload", "word"), [(b, w) for _, b, w in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
async def test_each_bad_field_is_a_readable_400_and_nothing_is_stored(
    api: AsyncTestClient[Any], redis_sync: redis.Redis, payload: Any, word: str
) -> None:
    resp = await api.post(SUBS, content=json.dumps(payload), headers=json_headers())
    assert_refused(resp, word)
    assert stored_keys(redis_sync) == []


# Litestar converts a handler's body in msgspec's lax mode; each of these bodies only lax mode
# would take (the string "null" for null, a number or a numeric string for a date-time).
LAX_ONLY: list[tuple[str, str, str, Any, str]] = [
    # (case id, method, path, body, the field the detail names)
    ("events 'null'", "POST", SUBS, body() | {"events": "null"}, "events"),
    ("metadata 'null'", "POST", SUBS, body() | {"metadata": "null"}, "metadata"),
    ("headers 'null'", "POST", SUBS, body() | {"headers": "null"}, "headers"),
    ("since a number", "POST", f"{SUBS}/redeliver", {"state": "gone", "since": 0.0}, "since"),
    ("since 'null'", "POST", f"{SUBS}/redeliver", {"state": "gone", "since": "null"}, "since"),
    (
        "until digits",
        "POST",
        f"{SUBS}/redeliver",
        {"state": "gone", "until": "1700000000"},
        "until",
    ),
    (
        "test delivery headers 'null'",
        "POST",
        "/v1/test-deliveries",
        {"callbackUrl": PUBLIC_URL, "headers": "null"},
        "headers",
    ),
    (
        "operational webhook headers 'null'",
        "PUT",
        "/v1/operational-webhook",
        {"url": PUBLIC_URL, "headers": "null"},
        "headers",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "word"),
    [case[1:] for case in LAX_ONLY],
    ids=[case[0] for case in LAX_ONLY],
)
async def test_a_body_only_lax_decoding_would_take_is_a_400_and_changes_nothing(
    api: AsyncTestClient[Any],
    redis_sync: redis.Redis,
    method: str,
    path: str,
    payload: Any,
    word: str,
) -> None:
    resp = await api.request(method, path, content=json.dumps(payload), headers=json_headers())
    assert_refused(resp, word)
    assert stored_keys(redis_sync) == []


def json_headers(content_type: str | None = "application/json") -> dict[str, str]:
    headers = dict(AUTH_ALPHA)
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


NESTED = b'{"projectName":"p","runId":"r","callbackUrl":"https://hooks.example/","metadata":{"a":'
RAW_BODIES: list[tuple[str, bytes, str | None, str]] = [
    # (case id, raw body, content-type, a word the detail must contain)
    ("not JSON", b"{not json", "application/json", "JSON"),
    ("truncated JSON", json.dumps(body()).encode()[:-1], "application/json", "JSON"),
    ("empty body", b"", "application/json", "empty"),
    ("whitespace body", b"  \n", "application/json", "empty"),
    ("invalid UTF-8 in a string", b'{"projectName":"\xff\xfe"}', "application/json", "UTF-8"),
    ("invalid UTF-8 outside strings", b"\xff{}", "application/json", "JSON"),
    ("nested 3000 deep", NESTED + b"[" * 3000 + b"]" * 3000 + b"}}", "application/json", "deep"),
    ("nested objects", b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json", "deep"),
    ("text/plain", json.dumps(body()).encode(), "text/plain", "Content-Type"),
    ("form", b"projectName=p&runId=r", "application/x-www-form-urlencoded", "Content-Type"),
    ("multipart", b"--x--", "multipart/form-data; boundary=x", "Content-Type"),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "word"),
    [(r, c, w) for _, r, c, w in RAW_BODIES],
    ids=[i for i, _, _, _ in RAW_BODIES],
)
async def test_unreadable_bodies_are_400_and_nothing_is_stored(
    api: AsyncTestClient[Any],
    redis_sync: redis.Redis,
    raw: bytes,
    content_type: str | None,
    word: str,
) -> None:
    resp = await api.post(SUBS, content=raw, headers=json_headers(content_type))
    assert_refused(resp, word)
    assert stored_keys(redis_sync) == []


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/vnd.relay+json"]
)
async def test_json_without_or_with_a_json_content_type_is_accepted(
    api: AsyncTestClient[Any], content_type: str | None
) -> None:
    resp = await api.post(SUBS, content=json.dumps(body()), headers=json_headers(content_type))
    assert resp.status_code == 201, resp.text


async def test_limits_are_inclusive_and_odd_but_legal_names_round_trip(
    api: AsyncTestClient[Any],
) -> None:
    meta = {"k": "x" * 4088}  # {"k":"…"} is exactly 4096 bytes
    assert len(json.dumps(meta, separators=(",", ":"))) == 4096
    cases = [
        body(project="p" * 200, run="r" * 128, metadata=meta),
        body(project="Mon projet é ? # % & +", run="Ab_-09"),
        body(project="...", run="x", events=["failed"]),
        body(project="a.b", run="y", events=["canceled", "completed", "canceled"], metadata=None),
    ]
    for payload in cases:
        resp = await api.post(SUBS, json=payload, headers=AUTH_ALPHA)
        assert resp.status_code == 201, resp.text
        got = resp.json()
        assert got["projectName"] == payload["projectName"]
        assert got["runId"] == payload["runId"]
        assert got["metadata"] == (payload.get("metadata") or {})
    assert got["events"] == ["completed", "canceled"]  # deduplicated, in canonical order


PRIVATE_URLS = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://10.0.0.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
    ("http://0.0.0.0/hook", "this network"),
    ("http://100.64.0.1/hook", "carrier-grade NAT"),
    ("http://[fd00::1]/hook", "unique local"),
    (f"https://{PRIVATE_HOST}/hook", "private"),
    (f"https://{MIXED_HOST}/hook", "loopback"),  # one bad address among good ones is enough
]


SHORTHAND_URLS = [
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/hook",  # 127.0.0.1 in hex, two parts
    "http://017700000001/hook",  # octal
    "http://1.1/hook",  # 1.0.0.1: public, but aiohttp would refuse it at every attempt
    "http://1572395790/hook",
]


@pytest.mark.parametrize("url", SHORTHAND_URLS)
async def test_shorthand_ipv4_forms_are_refused_even_with_private_callbacks(
    api: AsyncTestClient[Any], strict_api: AsyncTestClient[Any], redis_sync: redis.Redis, url: str
) -> None:
    for client in (api, strict_api):
        resp = await client.post(SUBS, json=body(url=url), headers=AUTH_ALPHA)
        assert_refused(resp, "shorthand IPv4 form", "four decimal numbers")
    assert stored_keys(redis_sync) == []


@pytest.mark.parametrize(("url", "why"), PRIVATE_URLS, ids=[u for u, _ in PRIVATE_URLS])
async def test_default_settings_refuse_private_callbacks_saying_why(
    strict_api: AsyncTestClient[Any], redis_sync: redis.Redis, url: str, why: str
) -> None:
    resp = await strict_api.post(SUBS, json=body(url=url), headers=AUTH_ALPHA)
    assert_refused(resp, "not allowed", why)
    assert stored_keys(redis_sync) == []


async def test_default_settings_accept_a_public_callback(
    strict_api: AsyncTestClient[Any],
) -> None:
    resp = await strict_api.post(SUBS, json=body(url=PUBLIC_URL), headers=AUTH_ALPHA)
    assert resp.status_code == 201, resp.text


async def test_registration_is_idempotent_per_client(api: AsyncTestClient[Any]) -> None:
    first = await api.post(SUBS, json=body(), headers=AUTH_ALPHA)
    assert first.status_code == 201
    sid = first.json()["id"]
    again = await api.post(SUBS, json=body(), headers=AUTH_ALPHA)
    assert again.status_code == 200 and again.json()["id"] == sid
    # The triple identifies the registration; other fields of a repeat do not change it.
    repeat = await api.post(SUBS, json=body(events=["failed"]), headers=AUTH_ALPHA)
    assert repeat.status_code == 200 and repeat.json()["id"] == sid
    assert repeat.json()["events"] == ["completed", "failed", "canceled"]
    other_url = await api.post(SUBS, json=body(url=PUBLIC_URL + "2"), headers=AUTH_ALPHA)
    assert other_url.status_code == 201 and other_url.json()["id"] != sid
    beta = await api.post(SUBS, json=body(), headers=AUTH_BETA)
    assert beta.status_code == 201 and beta.json()["id"] not in (sid, other_url.json()["id"])
    # A canceled registration does not swallow a new one.
    assert (await api.delete(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).status_code == 204
    renewed = await api.post(SUBS, json=body(), headers=AUTH_ALPHA)
    assert renewed.status_code == 201 and renewed.json()["id"] != sid


V1_ROUTES = [
    ("POST", SUBS),
    ("GET", SUBS),
    ("GET", f"{SUBS}/sub_abcdefghijklmnopqrstuv"),
    ("DELETE", f"{SUBS}/sub_abcdefghijklmnopqrstuv"),
    ("POST", f"{SUBS}/sub_abcdefghijklmnopqrstuv/redeliver"),
    ("GET", "/v1/runs/demo-project/run-1"),
    ("GET", "/v1/signing-secret"),
    ("POST", "/v1/signing-secret/rotate"),
]
BAD_AUTH: list[tuple[str, dict[str, str]]] = [
    ("no header", {}),
    ("empty header", {"Authorization": ""}),
    ("basic scheme", {"Authorization": "Basic YWxwaGE6c2VjcmV0"}),
    ("key without scheme", {"Authorization": ALPHA_KEY}),
    ("bearer without key", {"Authorization": "Bearer "}),
    ("unknown key", {"Authorization": "Bearer not-a-key-0123456789abcdef"}),
    ("key with a suffix", {"Authorization": f"Bearer {ALPHA_KEY}x"}),
    ("key prefix", {"Authorization": f"Bearer {ALPHA_KEY[:-1]}"}),
    ("token scheme", {"Authorization": f"Token {ALPHA_KEY}"}),
]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES, ids=[f"{m} {p}" for m, p in V1_ROUTES])
@pytest.mark.parametrize("headers", [h for _, h in BAD_AUTH], ids=[i for i, _ in BAD_AUTH])
async def test_every_v1_route_needs_a_valid_key(
    api: AsyncTestClient[Any],
    redis_sync: redis.Redis,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    # A body that would be malformed, too: the key is checked first.
    resp = await api.request(method, path, headers=headers, content=b"{not json")
    detail = assert_refused(resp, status=401)
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert ALPHA_KEY not in detail and ALPHA_KEY not in resp.text
    assert stored_keys(redis_sync) == []
    assert not redis_sync.exists(keys.secrets("alpha"))


async def test_the_scheme_is_case_insensitive(api: AsyncTestClient[Any]) -> None:
    resp = await api.get(SUBS, headers={"Authorization": f"bearer  {ALPHA_KEY} "})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/schema/openapi.json"])
async def test_operational_routes_need_no_key(api: AsyncTestClient[Any], path: str) -> None:
    resp = await api.get(path)
    assert resp.status_code == 200, resp.text


async def test_openapi_marks_exactly_the_v1_routes_as_needing_a_key(
    api: AsyncTestClient[Any],
) -> None:
    doc = (await api.get("/schema/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "delete"):
                continue
            effective = op.get("security", doc.get("security"))
            if path.startswith("/v1/ingress/"):  # Intuned's push: token and secret header
                assert effective == [{"ingressSecret": []}], (method, path)
                assert "401" in op["responses"], (method, path)
            elif path.startswith("/v1/"):
                assert effective == [{"bearer": []}], (method, path)
                assert "401" in op["responses"], (method, path)
            else:
                assert not effective, (method, path)
