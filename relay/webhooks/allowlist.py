"""The callback address policy: which resolved addresses a callback host may be sent to.

One verdict, ``CallbackPolicy.refusal(host, ip)``, used by registration and by every delivery
attempt (through ``relay.webhooks.callbacks``). The order of the rules:

1. Cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) and the link-local
   ranges (169.254.0.0/16, fe80::/10) are refused unless the allowlist names them *exactly*: the
   address itself (``169.254.169.254`` or ``169.254.169.254/32``) or the exact host name the URL
   uses (``metadata.internal``; a wildcard does not count). ``allow_private`` does not open them.
2. A public unicast address is accepted.
3. A private/loopback/reserved address is accepted when ``allow_private`` is on, when the host
   name matches a name entry (``billing.internal`` or ``*.svc.cluster.local``: one or more labels
   in front of the suffix), or when the address lies in a CIDR entry of the same IP version
   (IPv4-mapped IPv6 is not an IPv4 address: ``::ffff:127.0.0.1`` matches only an IPv6 entry).

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
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
LINK_LOCAL: Final = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_NAME: Final = re.compile(r"^(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$")


def is_metadata(ip: IPAddress) -> bool:
    """True for a cloud metadata address or any link-local address (refused unless exact)."""
    return ip in METADATA_ADDRESSES or any(ip in net for net in LINK_LOCAL)


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
                f"{reason}; cloud metadata and link-local addresses are refused unless listed "
                f"exactly in {ALLOWLIST_VARIABLE}"
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
