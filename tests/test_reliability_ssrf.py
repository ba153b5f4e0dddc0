"""Reliability 6, SSRF end to end with the default RELAY_ALLOW_PRIVATE_CALLBACKS=false.

The test owns a TCP listener on 127.0.0.1 and points every forbidden callback at it (or at the
cloud metadata address, which nothing here can reach): registration refuses each form with a 400
that says why; callbacks that turn private after registration (a name resolving to loopback at
delivery time, literals stored while private callbacks were allowed) are refused by the worker at
delivery; a callback answering 302 towards the listener is not followed. The listener must
accept no connection at all. Only loopback traffic: nothing is ever sent to a public address.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.api.app import create_app
from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import ATTEMPT_DECODER
from relay.settings import Settings
from relay.store import keys
from tests.support.listener import serving
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.reliability import register_many, state_counts
from tests.support.workers import StartInprocWorker


class Listener:
    """A loopback TCP listener that records every connection (it should get none)."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self.port = 0

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(str(writer.get_extra_info("peername")))
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """The loopback listener every forbidden callback points at."""
    it = Listener()
    async with serving(it._on_connect, "127.0.0.1") as port:
        it.port = port
        yield it


@pytest.fixture
async def strict_api(relay_env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API with the default policy: private callbacks refused."""
    settings = Settings.from_env({**relay_env, "RELAY_ALLOW_PRIVATE_CALLBACKS": "false"})
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


def forbidden_urls(port: int) -> dict[str, str]:
    """Every forbidden form, by what it is; each would reach the listener or a metadata service."""
    p = port
    return {
        "loopback": f"http://127.0.0.1:{p}/steal",
        "loopback /8": f"http://127.255.255.254:{p}/steal",
        "loopback https": f"https://127.0.0.1:{p}/steal",
        "localhost name": f"http://localhost:{p}/steal",
        "localhost name, trailing dot": f"http://localhost.:{p}/steal",
        "0.0.0.0": f"http://0.0.0.0:{p}/steal",
        "0 (short 0.0.0.0)": f"http://0:{p}/steal",
        "RFC 1918 10/8": f"http://10.0.0.1:{p}/steal",
        "RFC 1918 172.16/12": f"http://172.16.0.1:{p}/steal",
        "RFC 1918 192.168/16": f"http://192.168.1.1:{p}/steal",
        "CGNAT 100.64/10": f"http://100.64.0.1:{p}/steal",
        "link-local 169.254/16": f"http://169.254.1.1:{p}/steal",
        "cloud metadata": "http://169.254.169.254/latest/meta-data/",
        "IPv6 loopback ::1": f"http://[::1]:{p}/steal",
        "IPv6 unspecified ::": f"http://[::]:{p}/steal",
        "IPv6 ULA fc00::/7 (fc)": f"http://[fc00::1]:{p}/steal",
        "IPv6 ULA fc00::/7 (fd)": f"http://[fd12:3456::1]:{p}/steal",
        "IPv6 link-local fe80::/10": f"http://[fe80::1]:{p}/steal",
        "IPv4-mapped loopback": f"http://[::ffff:127.0.0.1]:{p}/steal",
        "IPv4-mapped loopback, hex": f"http://[::ffff:7f00:1]:{p}/steal",
        "IPv4-mapped metadata": "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "IPv4-mapped RFC 1918": f"http://[::ffff:10.0.0.1]:{p}/steal",
        "NAT64 of loopback": f"http://[64:ff9b::7f00:1]:{p}/steal",
        # Regression: these were accepted (Python's is_global is True for reserved IPv6 space).
        "IPv4-translated (SIIT) loopback": f"http://[::ffff:0:127.0.0.1]:{p}/steal",
        "IPv4-translated (SIIT) RFC 1918": f"http://[::ffff:0:10.0.0.1]:{p}/steal",
        "reserved IPv6 outside 2000::/3": f"http://[5f00::1]:{p}/steal",
        "6to4 of loopback": f"http://[2002:7f00:1::1]:{p}/steal",
        "decimal loopback": f"http://2130706433:{p}/steal",
        "decimal metadata": "http://2852039166/latest/meta-data/",
        "octal loopback": f"http://017700000001:{p}/steal",
        "octal dotted loopback": f"http://0177.0.0.1:{p}/steal",
        "hex loopback": f"http://0x7f000001:{p}/steal",
        "hex dotted loopback": f"http://0x7f.0x0.0x0.0x1:{p}/steal",
        "short loopback 127.1": f"http://127.1:{p}/steal",
        "mixed hex/octal metadata": "http://0xa9.0376.169.254/latest/meta-data/",
    }


async def test_every_forbidden_form_is_refused_at_registration(
    strict_api: AsyncTestClient[Any], listener: Listener, redis_sync: redis.Redis
) -> None:
    urls = forbidden_urls(listener.port)
    refused = {}
    for what, url in urls.items():
        body = {"projectName": "demo-project", "runId": "r1", "callbackUrl": url}
        resp = await strict_api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
        assert resp.status_code == 400, (what, url, resp.status_code, resp.text)
        detail = resp.json()["detail"]
        # Some resolvers do not answer "localhost." at all: refused for that reason instead.
        allowed = "not allowed" in detail or "shorthand IPv4 form" in detail
        assert allowed or "trailing dot" in what, (what, detail)
        refused[what] = detail
    await asyncio.sleep(0.1)
    assert listener.connections == []
    assert redis_sync.keys(keys.sub("*")) == []  # nothing was stored
    print(f"\nSSRF at registration: {len(refused)}/{len(urls)} forms refused with 400")


async def test_private_callbacks_open_link_local_but_never_metadata_in_any_form(
    api: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    # Contract §2 and §6, with RELAY_ALLOW_PRIVATE_CALLBACKS=true (the `api` fixture).
    metadata = [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://169.254.170.2/v2/credentials/",
    ]
    for url in metadata:
        body = {"projectName": "demo-project", "runId": "meta", "callbackUrl": url}
        resp = await api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
        assert resp.status_code == 400, (url, resp.text)
        assert "refused unless listed exactly" in resp.json()["detail"], (url, resp.text)
    assert redis_sync.keys(keys.sub("*")) == []  # nothing was stored
    for url in ("http://169.254.1.1/hook", "http://[fe80::1]/hook"):
        body = {"projectName": "demo-project", "runId": "link-local", "callbackUrl": url}
        resp = await api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
        assert resp.status_code == 201, (url, resp.text)


async def test_callbacks_turned_private_and_redirects_never_reach_the_listener(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    start_inproc_worker: StartInprocWorker,
    redis_sync: redis.Redis,
    listener: Listener,
) -> None:
    # Stored while private callbacks were allowed (the `api` fixture), as if the name had
    # resolved to a public address at registration: by delivery time, each points at loopback.
    p = listener.port
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    turned = {
        "name resolving to loopback at delivery": f"http://localhost:{p}/rebound",
        "loopback literal": f"http://127.0.0.1:{p}/literal",
        "IPv4-mapped literal": f"http://[::ffff:127.0.0.1]:{p}/mapped",
    }
    sids = await register_many(api, [(run_id, url) for url in turned.values()])
    strict = await start_inproc_worker(
        RELAY_ALLOW_PRIVATE_CALLBACKS="false", RELAY_RETRY_SCHEDULE="50ms,50ms"
    )
    await wait_until(lambda: state_counts(redis_sync, sids) == {"exhausted": len(sids)}, timeout=20)
    for sid in sids:
        errors = {
            ATTEMPT_DECODER.decode(a).error for a in redis_sync.lrange(keys.attempts(sid), 0, -1)
        }
        assert errors == {"ssrf_refused"}, (sid, errors)
    await strict.stop()

    # A callback that answers 302 towards the listener: the redirect is not followed. The first
    # hop is on loopback too, so this worker must allow private callbacks to reach it at all.
    async def redirector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/after-redirect\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n" % p
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirector, "127.0.0.1", 0)
    try:
        hop = server.sockets[0].getsockname()[1]
        [redirected] = await register_many(api, [(run_id, f"http://127.0.0.1:{hop}/hook")])
        await start_inproc_worker(
            RELAY_ALLOW_PRIVATE_CALLBACKS="true", RELAY_RETRY_SCHEDULE="50ms,50ms"
        )
        await wait_until(
            lambda: state_counts(redis_sync, [redirected]) == {"exhausted": 1}, timeout=20
        )
    finally:
        server.close()
        await server.wait_closed()
    log = [ATTEMPT_DECODER.decode(a) for a in redis_sync.lrange(keys.attempts(redirected), 0, -1)]
    assert [(a.status_code, a.error) for a in log] == [(302, "redirect")] * 3
    await asyncio.sleep(0.1)
    assert listener.connections == []
    print(
        f"\nSSRF at delivery: {len(turned)}/{len(turned)} refused (ssrf_refused), "
        "redirect not followed; listener connections: 0"
    )
