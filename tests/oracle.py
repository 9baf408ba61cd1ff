"""What a ruleset allows, computed straight from DESIGN.md §2 (the reference for kernel verdicts)."""

from __future__ import annotations

import ipaddress
from typing import Any

from mnp.api.ruleset import Direction, Protocol, RulesetSpec


def direction_allows(
    spec: RulesetSpec | None, direction: Direction, iface: str, addr: str, proto: Protocol, port: int
) -> bool:
    """Does `spec` let a new connection through `iface` in `direction` (addr = the remote end)?"""
    rules = spec.direction(direction) if spec is not None else None
    if rules is None or iface not in rules.isolated:
        return True
    ip = ipaddress.ip_address(addr)
    for r in rules.rules:
        if r.interface != iface:
            continue
        if r.peers is not None and not any(
            ip.version == p.cidr.version and ip in p.cidr and not any(ip in e for e in p.excepts) for p in r.peers
        ):
            continue
        if r.ports is not None and not any(
            p.protocol is proto and (p.port is None or p.port <= port <= (p.end_port or p.port)) for p in r.ports
        ):
            continue
        return True
    return False


def connection_allowed(result: Any, src: tuple[str, str, str, str], dst: tuple[str, str, str, str], proto: Protocol, port: int) -> bool:
    """src/dst = (namespace, pod, interface, address): egress of src and ingress of dst must both allow."""
    from mnp.api.refs import ObjRef

    src_spec = result.rulesets.get(ObjRef(src[0], src[1], "Pod"))
    dst_spec = result.rulesets.get(ObjRef(dst[0], dst[1], "Pod"))
    return direction_allows(src_spec, Direction.EGRESS, src[2], dst[3], proto, port) and direction_allows(
        dst_spec, Direction.INGRESS, dst[2], src[3], proto, port
    )
