"""The SSRF guard for callback URLs: syntax, an address policy, and a pinning aiohttp resolver.

Three layers, each used where it is cheapest and sufficient:

* ``validate_callback_url``: pure syntax (http/https, a host, no userinfo, a valid port).
* ``is_forbidden``: the address classes. Loopback, private, shared (CGNAT), link-local (cloud
  metadata), multicast, reserved, benchmarking, documentation, discard, and IPv6 forms that
  embed a forbidden IPv4 address; IPv4-mapped IPv6, Teredo and 6to4 are refused altogether
  (NAT64 of a public address is not). Whether a forbidden
  class is nevertheless allowed (``RELAY_CALLBACK_ALLOWLIST``, ``RELAY_ALLOW_PRIVATE_CALLBACKS``)
  is decided by ``relay.webhooks.allowlist.CallbackPolicy``.
* ``check_callback`` (registration) and ``GuardedResolver`` (every delivery) resolve the host
  (``dns_lookup``: c-ares through aiohttp's ``AsyncResolver``, no thread pool, a timeout per
  lookup) and refuse it when ANY address is refused. The resolver hands aiohttp only the addresses
  it checked, so the connection goes to exactly a checked address: there is no second lookup for
  a DNS-rebinding answer to slip into.

IPv4 literals must be written as four decimal numbers: the shorthand forms the OS would accept
(``2130706433``, ``0x7f.1``, ``127.1``, ``1.1``) are refused by ``validate_callback_url`` at
registration and, for anything stored earlier, as ``invalid_url`` at delivery (aiohttp refuses to
connect to them): one parser, one verdict. Resolver answers are still parsed leniently
(``parse_host_address``). aiohttp skips the resolver for literal hosts: the sender judges those
itself with ``literal_refusal`` before connecting.

This module must never touch Redis, and must never connect to the addresses it judges.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import AsyncResolver
from yarl import URL

from relay.errors import CallbackRefused
from relay.webhooks.allowlist import NAT64, CallbackPolicy, embedded_ipv4

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""Resolve ``(host, port)`` to addresses; raise ``OSError`` when the name does not resolve."""

MAX_URL_LENGTH: Final = 2048
DEFAULT_LOOKUP_TIMEOUT: Final = 5.0

# Addresses a webhook must never reach, beside what ``is_global`` already says: each network once,
# with what it is; a refusal names both ("private network (10.0.0.0/8)").
_FORBIDDEN_ROWS: Final = (
    ("0.0.0.0/8", "'this network'"),
    ("10.0.0.0/8", "private network"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, incl. cloud metadata"),
    ("172.16.0.0/12", "private network"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation, TEST-NET-1"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private network"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation, TEST-NET-2"),
    ("203.0.113.0/24", "documentation, TEST-NET-3"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, incl. broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible IPv6, deprecated"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
    ("::ffff:0:0:0/96", "IPv4-translated IPv6, SIIT"),
)
_FORBIDDEN: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = tuple(
    (ipaddress.ip_network(cidr), f"{what} ({cidr})") for cidr, what in _FORBIDDEN_ROWS
)
# Only 2000::/3 is allocated for global unicast; the rest of the space is reserved, and Python's
# is_global does not say so (it checks the special-purpose registry only).
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_NUMERIC_V4_ISH: Final = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_HOST_LABEL: Final = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_FLAGS: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class ParsedCallback(msgspec.Struct, frozen=True):
    """A syntactically valid callback URL: scheme, host as aiohttp will connect, and port."""

    url: str
    scheme: str
    host: str  # lower-case, IDNA-encoded, without IPv6 brackets
    port: int


class SsrfRefused(OSError):
    """A delivery's host resolved to a forbidden address (aiohttp wraps it as a DNS error)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(f"{host} resolves to {address}: {reason}")


def validate_callback_url(url: str) -> ParsedCallback:
    """Check a callback URL's syntax only (no DNS); raise CallbackRefused saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise CallbackRefused("must not contain whitespace or control characters")
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise CallbackRefused(f"is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise CallbackRefused("must be an http:// or https:// URL")
    host = parsed.raw_host
    if not parsed.is_absolute() or not host:
        raise CallbackRefused("must name a host")
    # yarl drops an empty userinfo ("http://@host/"); look at the authority as written, too.
    if "@" in (parsed.raw_authority or "") or "@" in urlsplit(url).netloc:
        raise CallbackRefused("must not contain a user name or password")
    if port is None or not 1 <= port <= 65535:
        raise CallbackRefused("has an invalid port (1-65535)")
    host = host.lower()
    _check_host(host)
    return ParsedCallback(url=url, scheme=parsed.scheme, host=host, port=port)


def _check_host(host: str) -> None:
    """Refuse a malformed host: a bad IPv6 literal, a shorthand IPv4 form, a bad name."""
    if ":" in host:
        if "%" in host:
            raise CallbackRefused("must not use an IPv6 zone identifier")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackRefused(f"has an invalid IPv6 address {host!r}") from None
        return
    literal = parse_host_address(host)
    if literal is not None:
        if str(literal) != host:
            raise CallbackRefused(
                f"host {host!r} is a shorthand IPv4 form (it means {literal}); "
                "write IPv4 addresses as four decimal numbers"
            )
        return
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        raise CallbackRefused(f"has an invalid host name {host!r}")


def parse_host_address(host: str) -> IPAddress | None:
    """The address a literal host connects to, as leniently as the OS parses it; else None.

    Accepts bracketed or bare IPv6 (zone ids allowed: getaddrinfo returns them) and every IPv4
    form ``inet_aton`` accepts (decimal, octal, hex, 1-3 parts). Host names give None.
    """
    text = host.strip("[]")
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    # inet_aton ignores anything after a space; only hand it strings that are all number-ish.
    if not _NUMERIC_V4_ISH.match(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def is_forbidden(ip: IPAddress) -> str | None:
    """Why a webhook must not be sent to ``ip``, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _listed(ip) or (None if ip.is_global else "not a globally routable address")
    return _v6_forbidden(ip)


def _listed(ip: IPAddress) -> str | None:
    """What ``ip`` is when it falls in a network of ``_FORBIDDEN`` (either family's)."""
    return next((what for net, what in _FORBIDDEN if ip in net), None)


def _tunnel_reason(ip: ipaddress.IPv6Address) -> str | None:
    """Why an IPv6 form embedding an IPv4 address (mapped, Teredo, 6to4, NAT64) is refused."""
    if ip.ipv4_mapped is not None:
        inner = is_forbidden(ip.ipv4_mapped)
        suffix = f"; it embeds {ip.ipv4_mapped}: {inner}" if inner else ""
        return f"IPv4-mapped IPv6 (::ffff:0:0/96) is not accepted{suffix}"
    for kind, inner_ip in embedded_ipv4(ip):
        inner = is_forbidden(inner_ip)
        if inner:
            return f"{kind} address embedding {inner_ip}: {inner}"
    if ip.teredo is not None:
        return "Teredo tunnelling (2001::/32) is not accepted"
    if ip.sixtofour is not None:
        # Deprecated (RFC 7526); said here, not left to ``is_global``, whose answer for
        # 2002::/16 changed between Python 3.11 patch releases.
        return "6to4 tunnelling (2002::/16) is not accepted"
    return None


def _v6_forbidden(ip: ipaddress.IPv6Address) -> str | None:
    reason = _tunnel_reason(ip)
    if reason is not None:
        return reason
    if ip in NAT64:
        return None  # a public IPv4 behind the well-known NAT64 prefix
    if listed := _listed(ip):
        return listed
    if ip not in _GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast (2000::/3)"
    if not ip.is_global:
        return "not a globally routable address"
    return None


_RESOLVERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncResolver] = (
    weakref.WeakKeyDictionary()
)


def _loop_resolver() -> AsyncResolver:
    """This event loop's c-ares resolver (one per loop, created on first use)."""
    loop = asyncio.get_running_loop()
    resolver = _RESOLVERS.get(loop)
    if resolver is None:
        resolver = _RESOLVERS[loop] = AsyncResolver(tries=1)
    return resolver


async def dns_lookup(host: str, port: int) -> list[IPAddress]:
    """Resolve with c-ares (aiodns): /etc/hosts and DNS, TCP addresses, both families.

    Lookups run on the event loop, concurrently and without a thread pool; the caller bounds
    each one with its own timeout.
    """
    infos = await _loop_resolver().resolve(host, port, socket.AF_UNSPEC)
    found: list[IPAddress] = []
    for info in infos:
        ip = parse_host_address(info["host"])
        if ip is not None and ip not in found:
            found.append(ip)
    return found


def literal_refusal(host: str, policy: CallbackPolicy) -> str | None:
    """Why a literal IP host must not be reached; None when allowed or not a literal."""
    literal = parse_host_address(host)
    return None if literal is None else policy.refusal(host, literal, is_forbidden)


async def _lookup_checked(
    host: str, port: int, *, policy: CallbackPolicy, lookup: Lookup, lookup_timeout: float
) -> list[IPAddress]:
    """Resolve ``host`` (a literal is its own answer) and judge every address; raise on refusal.

    Raises ``SsrfRefused`` for a refused address and ``OSError`` when nothing resolves.
    """
    literal = parse_host_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        async with asyncio.timeout(lookup_timeout):
            addresses = list(dict.fromkeys(await lookup(host, port)))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for ip in addresses:
        reason = policy.refusal(host, ip, is_forbidden)
        if reason is not None:
            raise SsrfRefused(host, str(ip), reason)
    return addresses


async def resolve_and_check(
    host: str,
    port: int,
    *,
    policy: CallbackPolicy,
    lookup: Lookup | None = None,
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
) -> list[IPAddress]:
    """Resolve ``host``; CallbackRefused if it does not resolve or ANY address is refused."""
    try:
        return await _lookup_checked(
            host, port, policy=policy, lookup=lookup or dns_lookup, lookup_timeout=lookup_timeout
        )
    except SsrfRefused as exc:
        raise CallbackRefused(
            f"host {host} resolves to {exc.address}, which is not allowed: {exc.reason}"
        ) from None
    except TimeoutError:
        raise CallbackRefused(f"host {host} did not resolve within {lookup_timeout}s") from None
    except OSError as exc:
        raise CallbackRefused(f"host {host} does not resolve ({exc})") from None


async def check_callback(
    url: str,
    *,
    policy: CallbackPolicy,
    lookup: Lookup | None = None,
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
    field: str = "callbackUrl",
) -> ParsedCallback:
    """Registration check: syntax, then resolution and the address policy; CallbackRefused why,
    naming ``field`` (the request's field that held the URL)."""
    try:
        parsed, allowed_literal = _checked_without_lookup(url, policy)
        if not allowed_literal:  # a name, or a refused literal (resolve_and_check says why)
            await resolve_and_check(
                parsed.host,
                parsed.port,
                policy=policy,
                lookup=lookup,
                lookup_timeout=lookup_timeout,
            )
    except CallbackRefused as exc:
        if exc.field == field:
            raise
        raise CallbackRefused(exc.reason, field) from None
    return parsed


@functools.lru_cache(maxsize=1024)
def _checked_without_lookup(url: str, policy: CallbackPolicy) -> tuple[ParsedCallback, bool]:
    """The syntax check, and True when the host is an IP literal the policy allows. Pure, so
    kept for the last 1,024 URLs: a registration to a known callback skips the URL parse."""
    parsed = validate_callback_url(url)
    literal = parse_host_address(parsed.host) is not None
    return parsed, literal and literal_refusal(parsed.host, policy) is None


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only addresses the policy accepted, or raises SsrfRefused.

    aiohttp connects to exactly the addresses returned here (its DNS cache also stores only these),
    so a name cannot be checked against one answer and connected with another. A lookup that
    fails or outlives ``timeout`` raises a plain OSError (aiohttp: a DNS error, attempt ``dns``).
    """

    def __init__(
        self,
        *,
        policy: CallbackPolicy,
        lookup: Lookup | None = None,
        timeout: float = DEFAULT_LOOKUP_TIMEOUT,
    ) -> None:
        self._policy = policy
        self._lookup = lookup or dns_lookup
        self._timeout = timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve and check ``host``; SsrfRefused (an OSError) if any address is refused."""
        try:
            addresses = await _lookup_checked(
                host, port, policy=self._policy, lookup=self._lookup, lookup_timeout=self._timeout
            )
        except TimeoutError:
            raise OSError(f"DNS lookup of {host} timed out after {self._timeout}s") from None
        results: list[ResolveResult] = []
        for ip in addresses:
            ip_family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, ip_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=ip_family,
                    proto=0,
                    flags=_NUMERIC_FLAGS,
                )
            )
        if not results:
            raise OSError(f"{host} has no address of the requested family")
        return results

    async def close(self) -> None:
        """Nothing to release: the loop's c-ares resolver lives as long as the loop."""
