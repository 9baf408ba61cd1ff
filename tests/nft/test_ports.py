"""Port sets compare by meaning, not by spelling."""

from __future__ import annotations

from mnp.api.ruleset import PortSpec, Protocol
from mnp.nft.ports import ANY, NONE, PortSet

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP


def test_adjacent_and_overlapping_ranges_merge() -> None:
    a = PortSet.of((PortSpec(TCP, 80), PortSpec(TCP, 81, 90), PortSpec(TCP, 85, 100), PortSpec(UDP, 53)))
    assert a.ranges == ((TCP, 80, 100), (UDP, 53, 53))
    assert a == PortSet.of((PortSpec(UDP, 53), PortSpec(TCP, 80, 100)))


def test_a_whole_protocol_absorbs_its_ports() -> None:
    a = PortSet.of((PortSpec(TCP, 80), PortSpec(TCP), PortSpec(UDP, 53)))
    assert a == PortSet(False, (TCP,), ((UDP, 53, 53),))


def test_omitted_ports_are_any_and_empty_ports_are_none() -> None:
    assert PortSet.of(None) is ANY
    assert PortSet.of(()).is_empty and PortSet.of(()) == NONE


def test_union_and_covers() -> None:
    web = PortSet.of((PortSpec(TCP, 80), PortSpec(TCP, 443)))
    dns = PortSet.of((PortSpec(UDP, 53),))
    both = web.union(dns)
    assert both.covers(web) and both.covers(dns) and not web.covers(both)
    assert ANY.covers(both) and not both.covers(ANY)
    assert PortSet.of((PortSpec(TCP),)).covers(web)
    assert not web.covers(PortSet.of((PortSpec(TCP, 80, 81),)))
    assert web.union(ANY) is ANY


def test_allows() -> None:
    s = PortSet.of((PortSpec(TCP, 5000, 5010), PortSpec(SCTP)))
    assert s.allows(TCP, 5005) and s.allows(SCTP, 1) and not s.allows(TCP, 4999) and not s.allows(UDP, 5005)
