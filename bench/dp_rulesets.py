"""The rulesets the data-plane benchmark loads into the pod under test.

`mnp-1` and `mnp-big` are PodNetworkRulesets rendered by mnp's own renderer; `linear` is a hand-written
one-rule-per-peer table (the shape of an iptables-style implementation, with a conntrack shortcut) shown
for contrast. Decoy peers never match the probe client, which is allowed by the very last element.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from mnp.api.ruleset import RulesetSpec, spec_from_raw

NAMESPACE = "bench"
NETWORK = f"{NAMESPACE}/mnpb-net"
IFNAME = "net1"
PROBE_UDP_PORT = 5001  # inside the decoys' UDP range, so the port check alone never rejects the probe
IPERF_PORT = 5201
LINEAR_TABLE = "mnpb"

# Decoys: exact addresses from 198.18.0.0/16, CIDRs as disjoint /28s from 198.19.0.0/16. The pods live in
# 192.0.2.0/24, so no decoy can match the client.
_EXACT_BASE = int(ipaddress.IPv4Address("198.18.0.1"))
_CIDR_BASE = int(ipaddress.IPv4Address("198.19.0.0"))
_DECOY_PORTS: tuple[list[dict[str, Any]], ...] = (
    [{"protocol": "TCP", "port": 8080}],
    [{"protocol": "UDP", "port": 5000, "endPort": 5010}],
    [{"protocol": "TCP", "port": 8080}, {"protocol": "UDP", "port": 5000, "endPort": 5010}],
)
_PROBE_PORTS = [
    {"protocol": "TCP", "port": 8080},
    {"protocol": "TCP", "port": IPERF_PORT},
    {"protocol": "UDP", "port": 5000, "endPort": 5010},
]


@dataclass(frozen=True, slots=True)
class Shape:
    """What a benchmark row loads: its size in peers, CIDRs and policies."""

    peers: int
    cidrs: int
    policies: int


def decoy_addresses(n: int) -> list[str]:
    return [str(ipaddress.IPv4Address(_EXACT_BASE + k)) for k in range(n)]


def decoy_cidrs(n: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(_CIDR_BASE + 16 * k)}/28" for k in range(n)]


def mnp_spec(
    shape: Shape, server_ip: str, client_ip: str, node: str, client_cidr: str | None = None
) -> RulesetSpec:
    """A ruleset with `shape.peers` exact peers and `shape.cidrs` CIDRs spread over the policies.

    Every policy has one ingress rule on net1 with its share of decoys and one of three realistic port
    groups; the last policy also allows the probe ports, and its last peer admits the client: the
    client's own address, or `client_cidr` (then the client is only found by the range lookup).
    """
    if client_cidr is None:
        exact, cidrs = decoy_addresses(shape.peers - 1), decoy_cidrs(shape.cidrs)
        client: dict[str, Any] = {"cidr": f"{client_ip}/32", "pod": f"{NAMESPACE}/client"}
    else:
        exact, cidrs = decoy_addresses(shape.peers), decoy_cidrs(shape.cidrs - 1)
        client = {"cidr": client_cidr}
    names = [f"{NAMESPACE}/allow-{i:03d}" for i in range(shape.policies)]
    rules = []
    for i, name in enumerate(names):
        lo_e, hi_e = _share(len(exact), shape.policies, i)
        lo_c, hi_c = _share(len(cidrs), shape.policies, i)
        peers: list[dict[str, Any]] = [{"cidr": c} for c in cidrs[lo_c:hi_c]]
        mine = enumerate(exact[lo_e:hi_e], lo_e)
        peers += [{"cidr": f"{a}/32", "pod": f"{NAMESPACE}/peer-{k}"} for k, a in mine]
        last = i == shape.policies - 1
        if last:
            peers.append(client)
        ports = _PROBE_PORTS if last else _DECOY_PORTS[i % len(_DECOY_PORTS)]
        rules.append({"policy": name, "rule": 0, "interface": IFNAME, "peers": peers, "ports": ports})
    raw = {
        "podUID": "mnpb-srv-uid",
        "node": node,
        "policies": names,
        "interfaces": [{"name": IFNAME, "network": NETWORK, "ips": [server_ip]}],
        "ingress": {"isolated": [IFNAME], "rules": rules},
    }
    return spec_from_raw(raw)


def _share(total: int, parts: int, i: int) -> tuple[int, int]:
    """Bounds of part i when `total` items are split as evenly as possible into `parts`."""
    return total * i // parts, total * (i + 1) // parts


def linear_script(n_decoys: int, client_ip: str) -> str:
    """One `ip saddr X accept` rule per peer after a ct shortcut; the client's rule comes last."""
    lines = [
        f"table inet {LINEAR_TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f'    iifname != "{IFNAME}" accept',
        "    ct state established,related accept",
    ]
    lines += [f"    ip saddr {a} accept" for a in decoy_addresses(n_decoys)]
    lines += [f"    ip saddr {client_ip} accept", "    drop", "  }", "}", ""]
    return "\n".join(lines)
