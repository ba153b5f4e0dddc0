"""The SSRF guard: URL syntax, the address policy, resolution, and pinning against DNS rebinding.

No test sends traffic anywhere but 127.0.0.0/8: public addresses appear only as answers of an
injected lookup that are judged and never connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence

import pytest

from relay.errors import CallbackRefused
from relay.webhooks.allowlist import CallbackPolicy
from relay.webhooks.callbacks import (
    GuardedResolver,
    IPAddress,
    SsrfRefused,
    check_callback,
    is_forbidden,
    parse_host_address,
    resolve_and_check,
    validate_callback_url,
)
from relay.webhooks.sender import WebhookSender
from tests.support.listener import recording_listener

OPEN = CallbackPolicy(allow_private=True)
STRICT = CallbackPolicy()

PUBLIC_V4 = ipaddress.ip_address("93.184.215.14")
PUBLIC_V6 = ipaddress.ip_address("2606:4700:4700::1111")


class Fixed:
    """An injected lookup answering the given addresses and recording its calls."""

    def __init__(self, *answers: str) -> None:
        self.answers = [ipaddress.ip_address(a) for a in answers]
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.calls.append((host, port))
        return self.answers


# ---- syntax -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http"),
        ("file:///etc/passwd", "http"),
        ("example.com/hook", "http"),
        ("http:///hook", "host"),
        ("http://user:pass@example.com/hook", "user name or password"),
        ("http://user@example.com/hook", "user name or password"),
        ("http://@example.com/hook", "user name or password"),
        ("http://example.com:99999/hook", "valid URL"),
        ("http://example.com:0/hook", "port"),
        ("http://exa mple.com/hook", "whitespace"),
        ("http://example.com/\r\nX-Injected: 1", "control"),
        ("http://exa_$mple.com/", "host name"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("https://example.com/" + "a" * 2048, "2048"),
    ],
)
def test_syntax_refusals_say_why(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        validate_callback_url(url)


def test_valid_urls_are_parsed_as_aiohttp_will_connect() -> None:
    parsed = validate_callback_url("HTTPS://Hooks.Example.COM/a?b=1")
    assert (parsed.scheme, parsed.host, parsed.port) == ("https", "hooks.example.com", 443)
    assert validate_callback_url("http://[2606:4700::1]:8080/x").host == "2606:4700::1"
    assert validate_callback_url("http://bücher.example/").host == "xn--bcher-kva.example"


# ---- the address policy -------------------------------------------------------------------------

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "198.19.255.255",
    "192.0.2.10",
    "198.51.100.7",
    "203.0.113.9",
    "192.0.0.8",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "100::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",  # mapped forms are refused altogether, even of a public address
    "::127.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses_have_a_reason(address: str) -> None:
    reason = is_forbidden(ipaddress.ip_address(address))
    assert reason, address


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is None


def test_reasons_name_the_embedded_address() -> None:
    reason = is_forbidden(ipaddress.ip_address("::ffff:169.254.169.254"))
    assert reason is not None
    assert "169.254.169.254" in reason
    assert "link-local" in reason
    reason = is_forbidden(ipaddress.ip_address("64:ff9b::c0a8:101"))
    assert reason is not None
    assert "192.168.1.1" in reason


# ---- odd literal forms ---------------------------------------------------------------------------

LOOPBACK_LITERAL_URLS = [
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]/",
    "http://127.0.0.1/",
]
SHORTHAND_URLS = [
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "http://0/",
    "http://1.1/",
    "http://1572395790/",
    "http://010.0.0.1/",
]


@pytest.mark.parametrize("url", LOOPBACK_LITERAL_URLS)
async def test_loopback_literals_are_refused_by_default_and_allowed_with_allow_private(
    url: str,
) -> None:
    never_called = Fixed("8.8.8.8")
    with pytest.raises(CallbackRefused, match="not allowed"):
        await check_callback(url, policy=STRICT, lookup=never_called)
    parsed = await check_callback(url, policy=OPEN, lookup=never_called)
    assert parsed.url == url
    # A literal is its own answer, like the OS resolver: no lookup happens for it.
    assert never_called.calls == []


async def test_a_literal_allowed_once_is_still_judged_by_each_policy() -> None:
    # check_callback keeps its verdict per URL: allowed under one policy is not allowed
    # under another, in either order.
    url = "http://127.0.0.1:9/kept"
    for _ in range(2):
        assert (await check_callback(url, policy=OPEN)).host == "127.0.0.1"
        with pytest.raises(CallbackRefused, match="loopback"):
            await check_callback(url, policy=STRICT)


@pytest.mark.parametrize("url", SHORTHAND_URLS)
async def test_shorthand_ipv4_literals_are_refused_whatever_the_policy(url: str) -> None:
    # aiohttp will not connect to these (invalid_url at delivery): registration says so first.
    for policy in (STRICT, OPEN):
        with pytest.raises(CallbackRefused, match="shorthand IPv4 form"):
            await check_callback(url, policy=policy, lookup=Fixed("8.8.8.8"))


def test_lenient_literal_parsing_matches_the_os() -> None:
    for host in ("2130706433", "0x7f.1", "017700000001", "127.1"):
        assert parse_host_address(host) == ipaddress.ip_address("127.0.0.1")
        assert socket.getaddrinfo(host, 80)[0][4][0] == "127.0.0.1"
    assert parse_host_address("0") == ipaddress.ip_address("0.0.0.0")
    assert parse_host_address("[::ffff:7f00:1]") == ipaddress.ip_address("::ffff:127.0.0.1")
    assert parse_host_address("example.com") is None
    assert parse_host_address("1.2.3.4 5") is None  # inet_aton would ignore the tail


# ---- resolution ----------------------------------------------------------------------------------


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    lookup = Fixed("10.0.0.7")
    with pytest.raises(CallbackRefused, match=r"10\.0\.0\.7.*private"):
        await check_callback("https://hooks.internal.test/x", policy=STRICT, lookup=lookup)
    assert lookup.calls == [("hooks.internal.test", 443)]
    await check_callback("https://hooks.internal.test/x", policy=OPEN, lookup=lookup)


async def test_any_forbidden_answer_refuses_the_name() -> None:
    with pytest.raises(CallbackRefused, match=r"127\.0\.0\.1"):
        await resolve_and_check(
            "mixed.test",
            443,
            policy=STRICT,
            lookup=Fixed(str(PUBLIC_V4), "127.0.0.1"),
        )


async def test_a_public_name_is_accepted_by_the_policy() -> None:
    got = await resolve_and_check(
        "hooks.example.com",
        443,
        policy=STRICT,
        lookup=Fixed(str(PUBLIC_V4), str(PUBLIC_V6)),
    )
    assert got == [PUBLIC_V4, PUBLIC_V6]


async def test_no_address_or_no_such_name_is_refused() -> None:
    with pytest.raises(CallbackRefused, match="does not resolve"):
        await resolve_and_check("empty.test", 80, policy=OPEN, lookup=Fixed())

    async def nxdomain(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(CallbackRefused, match="does not resolve"):
        await resolve_and_check("nope.test", 80, policy=OPEN, lookup=nxdomain)


async def test_a_hanging_lookup_is_cut_by_its_timeout() -> None:
    async def hang(host: str, port: int) -> Sequence[IPAddress]:
        await asyncio.sleep(30)
        return []

    with pytest.raises(CallbackRefused, match="did not resolve within"):
        await resolve_and_check("slow.test", 80, policy=OPEN, lookup=hang, lookup_timeout=0.1)


async def test_system_lookup_of_localhost_is_refused() -> None:
    with pytest.raises(CallbackRefused, match="loopback"):
        await check_callback("http://localhost:8080/hook", policy=STRICT)


async def test_guarded_resolver_returns_exactly_the_checked_addresses() -> None:
    resolver = GuardedResolver(policy=STRICT, lookup=Fixed(str(PUBLIC_V4), str(PUBLIC_V6)))
    results = await resolver.resolve("hooks.example.com", 443, family=socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        (str(PUBLIC_V4), 443, socket.AF_INET),
        (str(PUBLIC_V6), 443, socket.AF_INET6),
    ]
    only_v4 = await resolver.resolve("hooks.example.com", 443, family=socket.AF_INET)
    assert [r["host"] for r in only_v4] == [str(PUBLIC_V4)]
    with pytest.raises(SsrfRefused) as refused:
        await GuardedResolver(policy=STRICT, lookup=Fixed("169.254.169.254")).resolve("m", 80)
    assert isinstance(refused.value, OSError)
    assert refused.value.address == "169.254.169.254"


# ---- DNS rebinding: the checked answer is the connected answer ----------------------------------


@pytest.fixture
async def loopback_listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""
    async with recording_listener() as listener:
        yield listener


async def test_dns_rebinding_never_reaches_the_private_address(
    loopback_listener: tuple[int, list[str]],
) -> None:
    port, seen = loopback_listener
    answers = iter([[PUBLIC_V4], [ipaddress.ip_address("127.0.0.1")]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        calls.append(host)
        return next(answers, [ipaddress.ip_address("127.0.0.1")])

    # "localhost" really resolves to the listener: a sender that re-resolved with the system
    # resolver after the check would connect to it.
    url = f"http://localhost:{port}/hook"
    await check_callback(url, policy=STRICT, lookup=rebinding)  # registration: public
    async with WebhookSender(timeout=2, policy=STRICT, lookup=rebinding) as sender:
        result = await sender.send(url, b"{}", {"content-type": "application/json"})
        again = await sender.send(url, b"{}", {"content-type": "application/json"})
    await asyncio.sleep(0.05)
    assert seen == []
    assert (result.outcome, result.error) == ("retry", "ssrf_refused")
    assert (again.outcome, again.error) == ("retry", "ssrf_refused")
    assert calls == ["localhost", "localhost", "localhost"]  # every connection asked the guard


async def test_guarded_sender_reaches_a_name_only_through_the_checked_address(
    loopback_listener: tuple[int, list[str]],
) -> None:
    port, seen = loopback_listener
    lookup = Fixed("127.0.0.1")
    async with WebhookSender(timeout=2, policy=OPEN, lookup=lookup) as sender:
        await sender.send(f"http://pinned.invalid:{port}/", b"{}", {})
    # The name does not exist in DNS: only the injected answer can have led to the listener.
    assert lookup.calls == [("pinned.invalid", port)]
    await asyncio.sleep(0.05)
    assert len(seen) == 1
