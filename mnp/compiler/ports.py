"""Port entries of a policy rule → resolved PortSpecs, with named ports looked up on a pod."""

from __future__ import annotations

from collections.abc import Iterable

from mnp.api.cluster import Pod
from mnp.api.policy import PolicyPort
from mnp.api.ruleset import PortSpec


def port_key(p: PortSpec) -> tuple[str, int, int]:
    return (p.protocol, p.port or 0, p.end_port or 0)  # a Protocol is a str: orders by its value


def canonical_ports(ports: Iterable[PortSpec]) -> tuple[PortSpec, ...]:
    return tuple(sorted(set(ports), key=port_key))


def has_named(ports: tuple[PolicyPort, ...] | None) -> bool:
    return ports is not None and any(isinstance(p.port, str) for p in ports)


def numeric_ports(ports: tuple[PolicyPort, ...]) -> tuple[PortSpec, ...]:
    """The entries that need no pod to resolve: numbers, ranges and protocol-only entries."""
    return canonical_ports(
        PortSpec(p.protocol, p.port, p.end_port) for p in ports if not isinstance(p.port, str)
    )


def named_ports_on(ports: tuple[PolicyPort, ...], pod: Pod | None) -> tuple[PortSpec, ...]:
    """Named entries resolved on `pod` (name and protocol must both match); unresolvable ones vanish."""
    if pod is None:
        return ()
    out: list[PortSpec] = []
    for p in ports:
        if isinstance(p.port, str):
            out.extend(
                PortSpec(p.protocol, c.port)
                for c in pod.ports
                if c.name == p.port and c.protocol is p.protocol
            )
    return canonical_ports(out)


def resolve_ports_on(ports: tuple[PolicyPort, ...] | None, pod: Pod | None) -> tuple[PortSpec, ...] | None:
    """All entries, named ones resolved on `pod`. None stays None (any port); () means nothing."""
    if ports is None:
        return None
    return canonical_ports(numeric_ports(ports) + named_ports_on(ports, pod))
