"""The interval map is a partition of the address space that means what the rules say (DESIGN §2)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mnp.api.ruleset import Direction, Protocol, RulesetSpec, spec_from_raw
from mnp.nft import model
from mnp.nft.partition import peer_ranges, segment_key
from mnp.nft.render import build_table, render_ruleset
from tests.nft.evaluate import elements_from_text, table_allows
from tests.oracle import direction_allows

# Small address spaces so that random blocks nest, overlap and touch often.
V4_BASE = int(ipaddress.IPv4Address("203.0.113.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8:a::"))


@st.composite
def blocks(draw: st.DrawFn, version: int) -> dict[str, Any]:
    base, bits = (V4_BASE, 32) if version == 4 else (V6_BASE, 128)
    plen = draw(st.integers(bits - 8, bits))
    start = base + (draw(st.integers(0, 255)) >> (bits - plen) << (bits - plen))
    net = ipaddress.ip_network((start, plen))
    excepts = set()
    for _ in range(draw(st.integers(0, 3))):
        if net.prefixlen == bits:
            break
        eplen = draw(st.integers(net.prefixlen + 1, bits))
        offset = draw(st.integers(0, net.num_addresses - 1)) >> (bits - eplen) << (bits - eplen)
        excepts.add(str(ipaddress.ip_network((int(net.network_address) + offset, eplen))))
    out: dict[str, Any] = {"cidr": str(net)}
    if excepts:
        out["except"] = sorted(excepts)
    return out


PORTS = st.one_of(
    st.none(),
    st.lists(
        st.one_of(
            st.builds(lambda p: {"protocol": p}, st.sampled_from(["TCP", "UDP", "SCTP"])),
            st.builds(
                lambda p, n: {"protocol": p, "port": n}, st.sampled_from(["TCP", "UDP"]), st.integers(1, 8)
            ),
            st.builds(
                lambda p, n, k: {"protocol": p, "port": n, "endPort": n + k},
                st.sampled_from(["TCP", "UDP"]),
                st.integers(1, 8),
                st.integers(0, 4),
            ),
        ),
        max_size=3,
    ),
)


@st.composite
def rulesets(draw: st.DrawFn) -> RulesetSpec:
    rules = []
    for i in range(draw(st.integers(0, 6))):
        r: dict[str, Any] = {"policy": f"default/p{draw(st.integers(0, 2))}", "rule": i, "interface": "net1"}
        peers = draw(st.one_of(st.none(), st.lists(st.one_of(blocks(4), blocks(6)), max_size=4)))
        if peers is not None:
            r["peers"] = peers
        ports = draw(PORTS)
        if ports is not None:
            r["ports"] = ports
        rules.append(r)
    raw = {
        "podUID": "u",
        "node": "n",
        "interfaces": [{"name": "net1", "network": "default/a"}],
        draw(st.sampled_from(["ingress", "egress"])): {"isolated": ["net1"], "rules": rules},
    }
    return spec_from_raw(raw)


def _probes(version: int) -> list[str]:
    base = V4_BASE if version == 4 else V6_BASE
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [str(make(base + i)) for i in range(-1, 257)]


def _interval_maps_are_disjoint(table: model.Table) -> None:
    for m in table.maps:
        bounds = sorted(model.key_bounds(e.key) for e in m.elements)
        for (_, last), (first, _) in zip(bounds, bounds[1:], strict=False):
            assert last < first, f"{m.name}: elements overlap"


@settings(max_examples=150, deadline=None)
@given(
    rulesets(), st.sampled_from([(Protocol.TCP, 1), (Protocol.TCP, 5), (Protocol.UDP, 9), (Protocol.SCTP, 3)])
)
def test_every_address_gets_the_verdict_the_rules_give_it(
    spec: RulesetSpec, probe: tuple[Protocol, int]
) -> None:
    table = build_table(spec)
    _interval_maps_are_disjoint(table)
    # The text holds exactly the model's elements, so judging the model judges what nft gets.
    assert elements_from_text(render_ruleset(spec)) == {
        m.name: [(*model.key_bounds(e.key), e.verdict.render()) for e in m.elements] for m in table.maps
    }
    direction = Direction.INGRESS if spec.ingress is not None else Direction.EGRESS
    proto, port = probe
    for addr in _probes(4) + _probes(6):
        want = direction_allows(spec, direction, "net1", addr, proto, port)
        assert table_allows(table, direction, "net1", addr, proto, port) == want, addr


def test_except_only_shortens_its_own_peer() -> None:
    from mnp.api.ruleset import Peer

    peer = Peer(
        ipaddress.ip_network("10.0.0.0/24"),
        (ipaddress.ip_network("10.0.0.0/26"), ipaddress.ip_network("10.0.0.32/27")),
    )
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    assert peer_ranges(peer) == [(base + 64, base + 255)]


def test_segments_become_addresses_prefixes_or_ranges() -> None:
    a = int(ipaddress.IPv4Address("10.0.0.0"))
    assert segment_key(4, a, a) == ipaddress.IPv4Address("10.0.0.0")
    assert segment_key(4, a, a + 255) == ipaddress.IPv4Network("10.0.0.0/24")
    assert segment_key(4, a + 1, a + 6) == model.AddrRange(
        ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.6")
    )
    assert segment_key(6, 0, 2**128 - 1) == ipaddress.IPv6Network("::/0")
    assert segment_key(4, a, a + 511) == ipaddress.IPv4Network("10.0.0.0/23")
