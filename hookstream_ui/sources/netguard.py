"""Outbound connections to user-supplied hosts: resolved, checked, and always timed out.

Private, loopback, link-local and other non-public addresses are refused unless the
instance allows them (ALLOW_PRIVATE_NETWORKS), so a source form cannot be used to
probe the network hookstream runs in. The check runs on every resolved address, and the
callers connect to an address that passed it (never to a second DNS answer). An IPv6
address that carries an IPv4 one (mapped, compatible, translated, NAT64, 6to4, Teredo)
is judged by that IPv4 address too: each form reaches it.
"""

from __future__ import annotations

import ipaddress
import socket

from flask import current_app

from .base import SourceError

CONNECT_TIMEOUT = 4.0
READ_TIMEOUT = 5.0
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
PRIVATE_HINT = (
    "private, loopback and link-local addresses are blocked on this instance "
    "(set ALLOW_PRIVATE_NETWORKS to allow them)"
)


def allow_private() -> bool:
    return bool(current_app.config.get("ALLOW_PRIVATE_NETWORKS"))


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in net for net in (*_NAT64, _TRANSLATED, _COMPATIBLE)):
        found.append(ipaddress.IPv4Address(ip.packed[-4:]))
    return [v4 for v4 in found if v4 is not None]


def blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` (or the IPv4 address it carries) is not a public unicast address."""
    if not ip.is_global or ip.is_multicast:
        return True
    return isinstance(ip, ipaddress.IPv6Address) and any(blocked(v4) for v4 in _embedded_v4(ip))


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all of them allowed; else a SourceError."""
    if not host:
        raise SourceError("No host given")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SourceError(f"Host not found: {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private():
        for address in addresses:
            if blocked(ipaddress.ip_address(address.split("%")[0])):
                raise SourceError(f"Refusing to connect to {host} ({address}): {PRIVATE_HINT}")
    return addresses
