"""Address plan and name helpers shared by the kernel tests (imported as `kernel_plan`).

Addresses follow tests/conftest.py: network A is 192.0.2.0/24 + 2001:db8:a::/64, network B is
198.51.100.0/24 + 2001:db8:b::/64. Names carry a `mnpt<pid>...` prefix so runs can overlap.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from mnp.local.nodes.fabric import Attachment
from mnp.local.nodes.netns import list_netns
from mnp.local.nodes.probe import Probe, probe_all

_module_counter = itertools.count()

NET_A = "default/net-a"
NET_B = "default/net-b"


def module_prefix() -> str:
    """Like `unique_prefix`, for fixtures shared by a module (unique_prefix is per test)."""
    return f"mnpt{os.getpid() % 100000}m{next(_module_counter)}"


def leftover_netns(prefix: str) -> list[str]:
    return [n for n in list_netns(prefix) if n == prefix or n.startswith(prefix + "-")]


def assert_no_netns(prefix: str) -> None:
    left = leftover_netns(prefix)
    assert not left, f"netns left behind: {left}"


def a4(host: int) -> str:
    """Address `host` on network A, IPv4 (192.0.2.0/24)."""
    return f"192.0.2.{host}"


def a6(host: int) -> str:
    """Address `host` on network A, IPv6 (2001:db8:a::/64), host written in hex as in the address."""
    return f"2001:db8:a::{host:x}"


def b4(host: int) -> str:
    return f"198.51.100.{host}"


def b6(host: int) -> str:
    return f"2001:db8:b::{host:x}"


def on_a(host: int, v4: bool = True, v6: bool = True, ifname: str = "net1") -> Attachment:
    addrs = ((f"{a4(host)}/24",) if v4 else ()) + ((f"{a6(host)}/64",) if v6 else ())
    return Attachment(NET_A, ifname, addrs)


def on_b(host: int, v4: bool = True, v6: bool = True, ifname: str = "net2") -> Attachment:
    addrs = ((f"{b4(host)}/24",) if v4 else ()) + ((f"{b6(host)}/64",) if v6 else ())
    return Attachment(NET_B, ifname, addrs)


def rule(
    iface: str = "net1",
    peers: list[str | dict[str, object]] | None = None,
    ports: list[dict[str, object]] | None = None,
    policy: str = "default/p",
    index: int = 0,
) -> dict[str, object]:
    """One ruleset rule in wire form; a peer given as a string is a bare CIDR."""
    out: dict[str, object] = {"policy": policy, "rule": index, "interface": iface}
    if peers is not None:
        out["peers"] = [{"cidr": p} if isinstance(p, str) else p for p in peers]
    if ports is not None:
        out["ports"] = ports
    return out


def tcp(port: int | None = None, end: int | None = None) -> dict[str, object]:
    return _port("TCP", port, end)


def udp(port: int | None = None, end: int | None = None) -> dict[str, object]:
    return _port("UDP", port, end)


def sctp(port: int | None = None, end: int | None = None) -> dict[str, object]:
    return _port("SCTP", port, end)


def _port(proto: str, port: int | None, end: int | None) -> dict[str, object]:
    out: dict[str, object] = {"protocol": proto}
    if port is not None:
        out["port"] = port
    if end is not None:
        out["endPort"] = end
    return out


def ruleset_raw(
    network_status: list[dict[str, object]],
    ingress: tuple[list[str], list[dict[str, object]]] | None = None,
    egress: tuple[list[str], list[dict[str, object]]] | None = None,
    node: str = "node-1",
) -> dict[str, object]:
    """A PodNetworkRuleset spec (wire form) for a pod with this network-status.

    `ingress`/`egress` are (isolated interfaces, rules); None omits the direction.
    """
    raw: dict[str, object] = {
        "podUID": "uid-kernel-test",
        "node": node,
        "policies": ["default/p"],
        "interfaces": [
            {"name": e["interface"], "network": e["name"], "ips": list(e["ips"])}  # type: ignore[call-overload]
            for e in network_status
        ],
    }
    for key, value in (("ingress", ingress), ("egress", egress)):
        if value is not None:
            raw[key] = {"isolated": list(value[0]), "rules": list(value[1])}
    return raw


RECHECK_TIMEOUT = 2.0


def probe_verdicts(probes: Sequence[Probe], expected: Sequence[bool], timeout: float) -> list[bool]:
    """probe_all, then once more with a long timeout for the probes that should pass but did not.

    A pass is proof (the payload arrived); a miss within a short timeout may only be a slow machine.
    Re-checking the misses keeps denied probes cheap without making a loaded CI flaky; a probe that
    is really dropped is dropped again.
    """
    got = probe_all(probes, timeout)
    again = [i for i, (e, g) in enumerate(zip(expected, got, strict=True)) if e and not g]
    if again:
        for i, v in zip(again, probe_all([probes[i] for i in again], RECHECK_TIMEOUT), strict=True):
            got[i] = v
    return got


def assert_verdicts(cases: Sequence[tuple[Probe, bool]], timeout: float) -> None:
    """Each probe passes iff it is expected to; the message lists every probe that disagrees."""
    probes = [p for p, _ in cases]
    expected = [e for _, e in cases]
    got = probe_verdicts(probes, expected, timeout)
    wrong = [
        f"{p.client} -> {p.dst} {p.proto}/{p.port}{f' from {p.src}' if p.src else ''}: "
        f"expected {'pass' if e else 'drop'}, got {'pass' if g else 'drop'}"
        for p, e, g in zip(probes, expected, got, strict=True)
        if e != g
    ]
    assert not wrong, "\n".join(wrong)
