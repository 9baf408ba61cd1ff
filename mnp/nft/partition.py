"""Address ranges with their allowed ports, cut into disjoint segments for one interval map.

Peers of different rules and policies overlap and nest, and `except` carves holes into its own peer
only. An nft interval map refuses overlapping elements, and a lookup finds one element, so the map must
hold the partition of the address space where each segment carries the union of what every range over
it allows. `except` never denies: it only shortens its own peer's ranges before the sweep.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mnp.api.ruleset import Peer
from mnp.nft.model import AddrRange, IPAddress, Key
from mnp.nft.ports import PortSet, union_all


@dataclass(frozen=True, slots=True)
class Segment:
    """Addresses first..last (integers, inclusive) and what they may reach."""

    first: int
    last: int
    ports: PortSet


def peer_ranges(peer: Peer) -> list[tuple[int, int]]:
    """The peer's cidr minus its excepts, as sorted disjoint inclusive integer ranges."""
    lo, hi = int(peer.cidr.network_address), int(peer.cidr.broadcast_address)
    holes = sorted((int(e.network_address), int(e.broadcast_address)) for e in peer.excepts)
    out: list[tuple[int, int]] = []
    cursor = lo
    for a, b in holes:
        if a > cursor:
            out.append((cursor, a - 1))
        cursor = max(cursor, b + 1)
    if cursor <= hi:
        out.append((cursor, hi))
    return out


def partition(ranges: Iterable[tuple[int, int, PortSet]]) -> list[Segment]:
    """Disjoint, sorted segments; adjacent segments with equal ports are merged.

    A sweep over range boundaries: the ports of a segment are the union over the ranges active there.
    """
    events: dict[int, Counter[PortSet]] = {}
    for first, last, ports in ranges:
        if ports.is_empty:
            continue
        events.setdefault(first, Counter())[ports] += 1
        events.setdefault(last + 1, Counter())[ports] -= 1
    active: Counter[PortSet] = Counter()
    unions: dict[frozenset[PortSet], PortSet] = {}
    segments: list[Segment] = []
    bounds = sorted(events)
    for here, following in zip(bounds, bounds[1:], strict=False):
        active.update(events[here])
        live = frozenset(p for p, n in active.items() if n > 0)
        if not live:
            continue
        if live not in unions:
            unions[live] = union_all(sorted(live))
        ports = unions[live]
        last = following - 1
        if segments and segments[-1].last + 1 == here and segments[-1].ports == ports:
            segments[-1] = Segment(segments[-1].first, last, ports)
        else:
            segments.append(Segment(here, last, ports))
    return segments


def segment_at(segments: Sequence[Segment], starts: Sequence[int], address: int) -> Segment | None:
    """The segment holding `address`; `starts` is `[s.first for s in segments]`."""
    i = bisect.bisect_right(starts, address) - 1
    if i >= 0 and segments[i].last >= address:
        return segments[i]
    return None


def segment_key(version: int, first: int, last: int) -> Key:
    """The element key for first..last: an address, a prefix, or a range when it is not one prefix."""
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    lo: IPAddress = make(first)
    if first == last:
        return lo
    hi: IPAddress = make(last)
    # (last - first + 1) is a power of two and first is aligned to it: exactly one prefix.
    size = last - first + 1
    if size & (size - 1) == 0 and first % size == 0:
        return ipaddress.ip_network(f"{lo}/{lo.max_prefixlen - size.bit_length() + 1}")
    return AddrRange(lo, hi)
