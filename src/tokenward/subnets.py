"""Addresses as the groups attackers rent them in: /24 for IPv4, /48 for IPv6."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["subnet_of"]


@lru_cache(maxsize=65_536)
def subnet_of(ip: str) -> str:
    """``203.0.113.7`` -> ``203.0.113.0/24``; ``2001:db8:1:2::9`` -> ``2001:db8:1::/48``.
    Anything that is not an address is its own group."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
