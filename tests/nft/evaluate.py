"""Walks a rendered table (the model) the way the kernel would for the first packet of a connection.

Used to compare the renderer against tests/oracle.py (DESIGN §2) without a kernel, for many random
rulesets. Only what mnp renders is understood; the kernel tests check that nft agrees with the text.
"""

from __future__ import annotations

import ipaddress

from mnp.api.ruleset import Direction, Protocol
from mnp.nft import model
from mnp.nft.model import Selector, Table

_PROTO = {Protocol.TCP: model.Symbol.TCP, Protocol.UDP: model.Symbol.UDP, Protocol.SCTP: model.Symbol.SCTP}
_FAMILY = {
    Selector.IP_SADDR: 4,
    Selector.IP_DADDR: 4,
    Selector.IP6_SADDR: 6,
    Selector.IP6_DADDR: 6,
}


def lookup(m: model.Map, address: int) -> model.Verdict | None:
    hits = [
        e.verdict for e in m.elements if model.key_bounds(e.key)[0] <= address <= model.key_bounds(e.key)[1]
    ]
    assert len(hits) <= 1, f"{m.name}: {len(hits)} elements hold one address"
    return hits[0] if hits else None


def _chain_accepts(
    table: Table, name: str, version: int, address: int, proto: Protocol, port: int
) -> bool | None:
    """True = accept, False = drop, None = fell off the end (return to the caller)."""
    chains = {c.name: c for c in table.chains}
    maps = {m.name: m for m in table.maps}
    for rule in chains[name].rules:
        verdict: model.Verdict | None = None
        matched = True
        for st in rule.statements:
            if isinstance(st, model.Verdict):
                verdict = st
            elif isinstance(st, model.MapLookup):
                if _FAMILY[st.selector] != version:
                    matched = False
                    break
                verdict = lookup(maps[st.map_name], address)
                matched = verdict is not None
                break
            elif isinstance(st, model.Match):
                if st.selector is Selector.L4PROTO_DPORT:
                    assert isinstance(st.value, model.AnonSet)
                    matched = any(
                        isinstance(i, model.ProtoPorts)
                        and i.proto is _PROTO[proto]
                        and i.ports.first <= port <= i.ports.last
                        for i in st.value.items
                    )
                elif st.selector is Selector.META_L4PROTO and isinstance(st.value, model.AnonSet):
                    matched = _PROTO[proto] in st.value.items
                else:
                    # ct state, ICMP, ND, nfproto: never true for the first TCP/UDP/SCTP packet here.
                    matched = False
            elif isinstance(st, model.Verbatim):
                matched = False
            if not matched:
                break
        if not matched or verdict is None:
            continue
        if verdict.kind is model.VerdictKind.ACCEPT:
            return True
        if verdict.kind is model.VerdictKind.DROP:
            return False
        result = _chain_accepts(table, verdict.target, version, address, proto, port)
        if result is not None:
            return result
    return None


def table_allows(
    table: Table, direction: Direction, iface: str, addr: str, proto: Protocol, port: int
) -> bool:
    """Does the first packet of a new connection pass (addr = the remote end)?"""
    base = next((c for c in table.chains if c.name == direction.value), None)
    if base is None:
        return True
    targets: dict[str, str] = {}
    for r in base.rules:
        match, verdict = r.statements
        assert isinstance(match, model.InterfaceIs) and isinstance(verdict, model.Verdict)
        targets.setdefault(match.ifname, verdict.target)
    target = targets.get(iface)
    if target is None:
        return True
    ip = ipaddress.ip_address(addr)
    result = _chain_accepts(table, target, ip.version, int(ip), proto, port)
    assert result is not None, "an interface chain ends with drop"
    return result


def elements_from_text(text: str) -> dict[str, list[tuple[int, int, str]]]:
    """The map elements as written in rendered text: {map: [(first, last, verdict)]}."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("map "):
            current = stripped.split()[1]
            out[current] = []
        elif current and " : " in stripped and not stripped.startswith("type "):
            key, verdict = stripped.rstrip(",").split(" : ")
            if "-" in key and "/" not in key:
                a, b = key.split("-")
                first, last = int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))
            else:
                net = ipaddress.ip_network(key)
                first, last = int(net.network_address), int(net.broadcast_address)
            out[current].append((first, last, verdict))
        elif stripped == "}" and line.startswith("\t}"):
            current = ""
    return out
