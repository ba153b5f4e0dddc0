"""The callback address policy: which resolved addresses a callback host may be sent to.

One verdict, ``CallbackPolicy.refusal(host, ip)``, used by registration and by every delivery
attempt (through ``relay.webhooks.callbacks``). The order of the rules:

1. Cloud metadata addresses (``METADATA_ADDRESSES``: 169.254.169.254, fd00:ec2::254,
   100.100.100.200 and the container credential endpoints), also inside any IPv6 form that
   carries an IPv4 address (``embedded_ipv4``: ``::ffff:169.254.169.254``, NAT64, 6to4, ...), are
   refused unless the allowlist names them *exactly*: the address itself (``169.254.169.254`` or
   ``169.254.169.254/32``) or the exact host name the URL uses (``metadata.internal``; a
   wildcard does not count). ``allow_private`` does not open them (contract §6).
2. A public unicast address is accepted.
3. A private/loopback/link-local/reserved address is accepted when ``allow_private`` is on
   (contract §2), when the host name matches a name entry (``billing.internal`` or
   ``*.svc.cluster.local``: one or more labels in front of the suffix), or when the address lies
   in a CIDR entry of the same IP version (IPv4-mapped IPv6 is not an IPv4 address:
   ``::ffff:127.0.0.1`` matches only an IPv6 entry).

This module must never resolve names, touch Redis or open connections: it judges addresses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Final

import msgspec

from relay.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_VARIABLE: Final = "RELAY_CALLBACK_ALLOWLIST"
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # instance metadata: AWS, GCP, Azure, OCI, DigitalOcean, ...
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud instance metadata
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity credentials
        "fd00:ec2::23",  # AWS EKS Pod Identity credentials over IPv6
    )
)
NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
_V4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_V4_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAME: Final = re.compile(r"^(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$")


def _rfc6052(ip: ipaddress.IPv6Address, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address at the place RFC 6052 puts it for a translation prefix of ``prefix``
    bits (48, 56, 64 or 96): byte 8 (the "u" octet) is never part of it."""
    raw = ip.packed
    if prefix == 96:
        return ipaddress.IPv4Address(raw[12:])
    without_u = raw[:8] + raw[9:]
    start = min(prefix // 8, 8)
    return ipaddress.IPv4Address(without_u[start : start + 4])


def embedded_ipv4(ip: IPAddress) -> tuple[tuple[str, ipaddress.IPv4Address], ...]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form: IPv4-mapped,
    Teredo (client, then server), NAT64 (the well-known /96; the local-use /48 in each layout
    a network may use), IPv4-translated (SIIT), 6to4 and IPv4-compatible. An IPv4 address, or
    none of these: ()."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ()
    if ip.ipv4_mapped is not None:
        return (("IPv4-mapped", ip.ipv4_mapped),)
    if ip.teredo is not None:
        server, client = ip.teredo
        return (("Teredo", client), ("Teredo", server))
    if ip in NAT64:
        return (("NAT64", _rfc6052(ip, 96)),)
    if ip in _V4_TRANSLATED:
        return (("IPv4-translated", _rfc6052(ip, 96)),)
    if ip in _NAT64_LOCAL:
        return tuple(("local-use NAT64", _rfc6052(ip, p)) for p in (48, 56, 64, 96))
    if ip.sixtofour is not None:
        return (("6to4", ip.sixtofour),)
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return (("IPv4-compatible", ipaddress.IPv4Address(int(ip))),)
    return ()


def is_metadata(ip: IPAddress) -> bool:
    """True for a cloud metadata address, or an IPv6 form carrying one (refused unless exact)."""
    return ip in METADATA_ADDRESSES or any(v4 in METADATA_ADDRESSES for _, v4 in embedded_ipv4(ip))


class CallbackPolicy(msgspec.Struct, frozen=True):
    """Where callbacks may go: public addresses, plus what ``allow_private`` and the list open."""

    allow_private: bool = False
    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()  # exact host names, lower-case, no trailing dot
    suffixes: tuple[str, ...] = ()  # from "*.x.y": ".x.y"

    def _name_listed(self, host: str) -> bool:
        name = host.lower().removesuffix(".")
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def _exactly_listed(self, host: str, ip: IPAddress) -> bool:
        exact = host.lower().removesuffix(".") in self.names
        return exact or any(n.num_addresses == 1 and ip in n for n in self.networks)

    def refusal(
        self, host: str, ip: IPAddress, forbidden: Callable[[IPAddress], str | None]
    ) -> str | None:
        """Why ``host`` must not be reached at ``ip`` (``forbidden`` is the address policy)."""
        if is_metadata(ip):
            if self._exactly_listed(host, ip):
                return None
            reason = forbidden(ip) or "cloud metadata"
            return (
                f"{reason}; cloud metadata addresses are refused unless listed exactly in "
                f"{ALLOWLIST_VARIABLE}"
            )
        why = forbidden(ip)
        if why is None or self.allow_private:
            return None
        if self._name_listed(host) or any(ip in n for n in self.networks):
            return None
        return f"{why} (not in {ALLOWLIST_VARIABLE})"


def parse_allowlist(text: str, *, name: str = ALLOWLIST_VARIABLE) -> tuple[str, ...]:
    """Validate a comma-separated allowlist; its normalized entries, or ConfigError."""
    entries: list[str] = []
    for raw in (part.strip().lower() for part in text.split(",")):
        if not raw:
            continue
        entry = raw.removesuffix(".")
        if _network(entry) is None and not _NAME.match(entry):
            raise ConfigError(
                name,
                f"entry {raw!r} is neither a CIDR/address (10.0.0.0/8, fd00::1) nor a host name "
                "(billing.internal, *.svc.cluster.local)",
            )
        entries.append(entry)
    return tuple(dict.fromkeys(entries))


def _network(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


@functools.cache
def build_policy(allow_private: bool, entries: tuple[str, ...]) -> CallbackPolicy:
    """The policy for validated entries (cached: settings build it once per process)."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    suffixes: list[str] = []
    for entry in entries:
        net = _network(entry)
        if net is not None:
            networks.append(net)
        elif entry.startswith("*."):
            suffixes.append(entry[1:])
        else:
            names.add(entry)
    return CallbackPolicy(
        allow_private=allow_private,
        networks=tuple(networks),
        names=frozenset(names),
        suffixes=tuple(suffixes),
    )
