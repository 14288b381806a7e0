"""Network rules on the data plane: who may call an account, by address.

An account's `networkAcls` (§6.3) say `defaultAction` Allow or Deny and list
`ipRules` (an IPv4 address or CIDR each). With Deny, only callers whose
address falls in a rule get through; the others get Azure's 403 "Access
denied due to Virtual Network/Firewall rules." (`publicNetworkAccess:
Disabled` is checked before this and refuses everyone.)

The caller's address is the TCP peer, unless that peer is a trusted proxy
(LAPIS_TRUSTED_PROXIES): then the last address of X-Forwarded-For that is not
itself a trusted proxy. X-Forwarded-For from anyone else is ignored, so a
client cannot name its own address.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or bare addresses; raises ValueError naming a bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(str(value)) from None
    return tuple(out)


def allowed_networks(network_acls: Any) -> tuple[Network, ...] | None:
    """None when every address may call; else the networks that may."""
    if not isinstance(network_acls, dict) or str(network_acls.get("defaultAction") or "Allow").lower() != "deny":
        return None
    rules = network_acls.get("ipRules") or []
    return parse_networks(r.get("value", "") for r in rules if isinstance(r, dict))


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    if peer is None or not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def permitted(address: str | None, allowed: tuple[Network, ...]) -> bool:
    return address is not None and _within(address, allowed)
