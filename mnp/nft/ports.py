"""Sets of allowed ports in a canonical form, so equal meanings compare equal.

The renderer gives every distinct set of allowed ports one chain and keys addresses by it; merging
and comparing those sets must not depend on how the policies happened to spell them (a port inside a
range, a range next to another, a port of a protocol that is allowed whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mnp.api.ruleset import PortSpec, Protocol


@dataclass(frozen=True, slots=True, order=True)
class PortSet:
    """Allowed (protocol, destination port) pairs.

    `any_port`: everything, whatever the protocol. Otherwise `whole` are the protocols allowed on every
    port, and `ranges` sorted, merged, disjoint port ranges of the other protocols.
    """

    any_port: bool = False
    whole: tuple[Protocol, ...] = ()
    ranges: tuple[tuple[Protocol, int, int], ...] = ()

    @staticmethod
    def of(ports: tuple[PortSpec, ...] | None) -> PortSet:
        """The set a rule's `ports` allow: None is any port, () is none."""
        if ports is None:
            return ANY
        whole = {p.protocol for p in ports if p.port is None}
        spans = [
            (p.protocol, p.port, p.end_port if p.end_port is not None else p.port)
            for p in ports
            if p.port is not None
        ]
        return _canonical(whole, spans)

    @property
    def is_any(self) -> bool:
        return self.any_port

    @property
    def is_empty(self) -> bool:
        return not (self.any_port or self.whole or self.ranges)

    def union(self, other: PortSet) -> PortSet:
        if self.any_port or other.any_port:
            return ANY
        return _canonical(set(self.whole) | set(other.whole), [*self.ranges, *other.ranges])

    def covers(self, other: PortSet) -> bool:
        """Whether everything `other` allows is allowed here."""
        if self.any_port:
            return True
        if other.any_port or not set(other.whole) <= set(self.whole):
            return False
        return all(
            proto in self.whole or any(p == proto and a <= lo and hi <= b for p, a, b in self.ranges)
            for proto, lo, hi in other.ranges
        )

    def allows(self, protocol: Protocol, port: int) -> bool:
        if self.any_port or protocol in self.whole:
            return True
        return any(p == protocol and a <= port <= b for p, a, b in self.ranges)


ANY = PortSet(any_port=True)
NONE = PortSet()


def _canonical(whole: set[Protocol], spans: Iterable[tuple[Protocol, int, int]]) -> PortSet:
    merged: list[tuple[Protocol, int, int]] = []
    for proto, lo, hi in sorted(s for s in spans if s[0] not in whole):
        if merged and merged[-1][0] == proto and lo <= merged[-1][2] + 1:
            last = merged[-1]
            merged[-1] = (proto, last[1], max(last[2], hi))
        else:
            merged.append((proto, lo, hi))
    return PortSet(False, tuple(sorted(whole)), tuple(merged))


def union_all(sets: Iterable[PortSet]) -> PortSet:
    result = NONE
    for s in sets:
        result = result.union(s)
        if result.any_port:
            break
    return result
