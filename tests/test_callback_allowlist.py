"""RELAY_CALLBACK_ALLOWLIST: private receivers an operator names, and cloud metadata kept shut.

The policy is checked as a pure function first; then black box over sockets: an API and a worker
with private callbacks off and ``127.0.0.1`` allowlisted reach a loopback receiver, while the
metadata address, a private address and an IPv4-mapped loopback form are refused at registration
(400 saying why) and at delivery (a listener on 127.0.0.2 sees no connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.api.app import create_app
from relay.errors import ConfigError
from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import ATTEMPT_DECODER
from relay.settings import Settings
from relay.store import keys
from relay.webhooks.allowlist import build_policy, parse_allowlist
from relay.webhooks.callbacks import is_forbidden
from tests.support.listener import recording_listener
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.reliability import register_many, state_counts
from tests.support.workers import StartInprocWorker

ALLOWLISTED = {"RELAY_ALLOW_PRIVATE_CALLBACKS": "false", "RELAY_CALLBACK_ALLOWLIST": "127.0.0.1"}


def verdict(entries: str, host: str, address: str, *, allow_private: bool = False) -> str | None:
    policy = build_policy(allow_private, parse_allowlist(entries))
    return policy.refusal(host, ipaddress.ip_address(address), is_forbidden)


def test_cidrs_names_and_wildcards_open_private_addresses() -> None:
    entries = "10.1.0.0/16, billing.internal, *.svc.cluster.local, fd00:1::/64"
    assert verdict(entries, "10.1.2.3", "10.1.2.3") is None
    assert verdict(entries, "billing.internal", "10.9.9.9") is None
    assert verdict(entries, "billing.internal.", "10.9.9.9") is None
    assert verdict(entries, "hooks.team.svc.cluster.local", "172.16.0.5") is None
    assert verdict(entries, "x.svc.cluster.local", "fd00:1::5") is None
    for host, address in [
        ("10.2.0.1", "10.2.0.1"),  # outside the CIDR
        ("svc.cluster.local", "10.9.9.9"),  # the wildcard needs a label in front
        ("evilsvc.cluster.local", "10.9.9.9"),
        ("other.internal", "10.9.9.9"),
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),  # IPv4-mapped is not the IPv4 address
    ]:
        refusal = verdict(entries, host, address)
        assert refusal is not None and "RELAY_CALLBACK_ALLOWLIST" in refusal, (host, refusal)
    assert verdict(entries, "example.com", "93.184.215.14") is None  # public stays public


METADATA_FORMS = [
    "169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "169.254.170.2",  # ECS task credentials
    "169.254.170.23",  # EKS Pod Identity
    "fd00:ec2::23",
    # 169.254.169.254 inside each IPv6 form that carries an IPv4 address:
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:0:a9fe:a9fe",  # IPv4-translated (SIIT)
    "64:ff9b::a9fe:a9fe",  # NAT64, well-known prefix
    "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64, /48 layout (RFC 6052: the u octet skipped)
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64, /96 layout
    "2002:a9fe:a9fe::1",  # 6to4
    "::a9fe:a9fe",  # IPv4-compatible
    "2001:0:a9fe:a9fe::1",  # Teredo, as the server
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, as the client (bits inverted)
]


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_metadata_needs_the_exact_address_or_host_even_with_private_callbacks(
    address: str,
) -> None:
    for entries in ("", "0.0.0.0/0, ::/0", "169.254.0.0/16, fe80::/10, fd00::/8, 100.64.0.0/10"):
        refusal = verdict(entries, "meta.internal", address, allow_private=True)
        assert refusal is not None and "listed exactly" in refusal, (entries, refusal)
    assert verdict("*.internal", "meta.internal", address) is not None  # a wildcard is not exact
    assert verdict(address, address, address) is None
    assert verdict("meta.internal", "meta.internal", address) is None


@pytest.mark.parametrize("address", ["169.254.10.1", "169.254.169.253", "fe80::1"])
def test_other_link_local_addresses_are_private_ones(address: str) -> None:
    """Contract §2: private callbacks open loopback, private and link-local addresses; only the
    metadata addresses stay shut (§6). An allowlisted range opens them too."""
    assert verdict("", "hook.internal", address, allow_private=True) is None
    assert verdict("169.254.0.0/16, fe80::/10", "hook.internal", address) is None
    refusal = verdict("", "hook.internal", address)
    assert refusal is not None and "link-local" in refusal and "RELAY_CALLBACK_ALLOWLIST" in refusal


def test_a_public_address_inside_an_ipv6_form_is_no_metadata() -> None:
    # 93.184.215.14 behind the well-known NAT64 prefix is a public address.
    assert verdict("", "example.com", "64:ff9b::5db8:d70e") is None
    # In 6to4 it is refused, as 6to4 is (deprecated), whatever Python's is_global says of 2002::/16.
    refusal = verdict("", "example.com", "2002:5db8:d70e::1")
    assert refusal is not None and "6to4 tunnelling" in refusal


@pytest.mark.parametrize("entry", ["*", "http://x/", "10.0.0.0/33", "a..b", "*.*.x", "x y"])
def test_malformed_entries_name_the_variable(entry: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_CALLBACK_ALLOWLIST"):
        parse_allowlist(f"ok.internal,{entry}")


# ---- black box ----------------------------------------------------------------------------------


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP listener on 127.0.0.2 recording every connection (it must get none)."""
    async with recording_listener("127.0.0.2") as listener:
        yield listener


def refused_urls(port: int) -> dict[str, str]:
    return {
        "link-local, incl. cloud metadata": f"http://169.254.169.254:{port}/latest/meta-data/",
        "private network (10.0.0.0/8)": f"http://10.0.0.1:{port}/hook",
        "IPv4-mapped IPv6": f"http://[::ffff:127.0.0.2]:{port}/hook",
    }


@pytest.fixture
async def allowlisted_api(relay_env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API with private callbacks off and 127.0.0.1 allowlisted (the system resolver)."""
    settings = Settings.from_env({**relay_env, **ALLOWLISTED})
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_registration_accepts_the_allowlisted_receiver_and_says_why_others_are_refused(
    allowlisted_api: AsyncTestClient[Any],
    api: AsyncTestClient[Any],
    receiver: ReceiverHandle,
    listener: tuple[int, list[str]],
    redis_sync: redis.Redis,
) -> None:
    port, seen = listener
    ok = {"projectName": "p", "runId": "r1", "callbackUrl": receiver.url("/ok")}
    resp = await allowlisted_api.post("/v1/subscriptions", json=ok, headers=AUTH_ALPHA)
    assert resp.status_code == 201, resp.text
    for why, url in refused_urls(port).items():
        for client in (allowlisted_api, api):  # api: RELAY_ALLOW_PRIVATE_CALLBACKS=true
            body = {"projectName": "p", "runId": "r2", "callbackUrl": url}
            resp = await client.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
            if client is api and "metadata" not in why:
                assert resp.status_code == 201, (url, resp.text)  # private callbacks allowed
                continue
            assert resp.status_code == 400, (url, resp.text)
            assert why in resp.json()["detail"], resp.json()["detail"]
    await asyncio.sleep(0.05)
    assert seen == []


async def test_delivery_reaches_the_allowlisted_receiver_and_nothing_else(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    start_inproc_worker: StartInprocWorker,
    receiver: ReceiverHandle,
    listener: tuple[int, list[str]],
    redis_sync: redis.Redis,
) -> None:
    port, seen = listener
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    # Stored while private callbacks were allowed; the worker below has them off.
    urls = [u for w, u in refused_urls(port).items() if "metadata" not in w]
    refused = await register_many(api, [(run_id, u) for u in [*urls, f"{urls[0]}/meta"]])
    # No API accepts the metadata address any more: put it into the stored document directly.
    redis_sync.hset(
        keys.sub(refused[2]),
        keys.SubField.CALLBACK.value,
        refused_urls(port)["link-local, incl. cloud metadata"],
    )
    [good] = await register_many(api, [(run_id, receiver.url("/ok"))])
    await start_inproc_worker(**ALLOWLISTED, RELAY_RETRY_SCHEDULE="50ms")
    everyone = [*refused, good]
    await wait_until(
        lambda: state_counts(redis_sync, everyone) == {"exhausted": 3, "delivered": 1}, timeout=20
    )
    assert len(receiver.requests) == 1
    for sid in refused:
        errors = {
            ATTEMPT_DECODER.decode(a).error for a in redis_sync.lrange(keys.attempts(sid), 0, -1)
        }
        assert errors == {"ssrf_refused"}, (sid, errors)
    await asyncio.sleep(0.05)
    assert seen == []
