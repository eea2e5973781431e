"""Outbound connections to user-supplied hosts: resolved, checked, and always timed out.

Private, loopback, link-local and other non-public addresses are refused unless the
instance allows them (ALLOW_PRIVATE_NETWORKS), so a source form cannot be used to
probe the network hookstream runs in. The check runs on every resolved address.
"""
from __future__ import annotations

import ipaddress
import socket

from flask import current_app

from .base import SourceError

CONNECT_TIMEOUT = 4.0
READ_TIMEOUT = 5.0


def allow_private() -> bool:
    return bool(current_app.config.get("ALLOW_PRIVATE_NETWORKS"))


def _blocked(ip: ipaddress._BaseAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all of them allowed; else a SourceError."""
    if not host:
        raise SourceError("No host given")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SourceError(f"Host not found: {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private():
        for address in addresses:
            if _blocked(ipaddress.ip_address(address.split("%")[0])):
                raise SourceError(
                    f"Refusing to connect to {host} ({address}): private, loopback and link-local "
                    "addresses are blocked on this instance (set ALLOW_PRIVATE_NETWORKS to allow them)")
    return addresses
