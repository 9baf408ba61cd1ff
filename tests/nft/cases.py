"""Rulesets for the golden files, as the controller would write them (address plan: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from mnp.api.ruleset import RulesetSpec, spec_from_raw
from mnp.nft.custom import CustomRules
from mnp.nft.render import RenderOptions

NET1 = {"name": "net1", "network": "default/net-a", "ips": ["192.0.2.10", "2001:db8:a::10"]}
NET2 = {"name": "net2", "network": "default/net-b", "ips": ["198.51.100.10", "2001:db8:b::10"]}


def spec(
    ingress: Any = None, egress: Any = None, interfaces: Any = (NET1,), policies: Any = None
) -> RulesetSpec:
    raw: dict[str, Any] = {"podUID": "0c1e7a52-pod", "node": "node-1", "interfaces": list(interfaces)}
    rules = [r for d in (ingress, egress) if d for r in d.get("rules", [])]
    raw["policies"] = policies if policies is not None else sorted({r["policy"] for r in rules})
    if ingress is not None:
        raw["ingress"] = ingress
    if egress is not None:
        raw["egress"] = egress
    return spec_from_raw(raw)


def rule(
    policy: str, index: int, iface: str = "net1", peers: Any = None, ports: Any = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": policy, "rule": index, "interface": iface}
    if peers is not None:
        out["peers"] = peers
    if ports is not None:
        out["ports"] = ports
    return out


CASES: dict[str, tuple[RulesetSpec, RenderOptions]] = {
    "deny-all": (
        spec(ingress={"isolated": ["net1"], "rules": []}, policies=["default/deny"]),
        RenderOptions(),
    ),
    "allow-any": (
        spec(ingress={"isolated": ["net1"], "rules": [rule("default/allow", 0)]}),
        RenderOptions(),
    ),
    "nothing-isolated": (spec(), RenderOptions()),
    "ports-ranges-protocol-only": (
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [
                    rule(
                        "default/web",
                        0,
                        peers=[
                            {"cidr": "192.0.2.21/32", "pod": "default/frontend-1"},
                            {"cidr": "192.0.2.22/32", "pod": "default/frontend-2"},
                            {"cidr": "2001:db8:a::21/128", "pod": "default/frontend-1"},
                        ],
                        ports=[
                            {"protocol": "TCP", "port": 8080},
                            {"protocol": "TCP", "port": 8081},
                            {"protocol": "UDP", "port": 5000, "endPort": 5010},
                            {"protocol": "SCTP"},
                        ],
                    ),
                    # frontend-2 also gets 9090 from a second policy: its own port set (union).
                    rule(
                        "default/metrics",
                        0,
                        peers=[{"cidr": "192.0.2.22/32"}],
                        ports=[{"protocol": "TCP", "port": 9090}],
                    ),
                    # monitor may reach every port.
                    rule("default/monitor", 0, peers=[{"cidr": "192.0.2.30/32"}]),
                    # `ports: []` (named ports resolved nowhere) and `peers: []` grant nothing.
                    rule("default/named", 0, peers=[{"cidr": "192.0.2.40/32"}], ports=[]),
                    rule("default/empty", 0, peers=[], ports=[{"protocol": "TCP", "port": 22}]),
                ],
            }
        ),
        RenderOptions(),
    ),
    "ipblock-except-overlapping": (
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [
                    rule(
                        "default/blocks",
                        0,
                        peers=[{"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25", "203.0.113.8/29"]}],
                        ports=[{"protocol": "TCP", "port": 443}],
                    ),
                    # Nested inside the except of rule 0: allowed by this rule, never denied by that except.
                    rule(
                        "default/blocks",
                        1,
                        peers=[{"cidr": "203.0.113.128/26"}],
                        ports=[{"protocol": "TCP", "port": 443}],
                    ),
                    # Overlaps rule 0 with other ports; from another policy.
                    rule(
                        "default/other",
                        0,
                        peers=[{"cidr": "203.0.113.0/25"}],
                        ports=[{"protocol": "UDP", "port": 53}],
                    ),
                    # An exact address inside a range that already allows its ports: no hash entry needed.
                    rule(
                        "default/other",
                        1,
                        peers=[{"cidr": "203.0.113.5/32"}],
                        ports=[{"protocol": "UDP", "port": 53}],
                    ),
                    # Everything but one /16, and an IPv6 block with a hole that another peer fills.
                    rule(
                        "default/world",
                        0,
                        peers=[{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}],
                        ports=[{"protocol": "TCP", "port": 80}],
                    ),
                    rule(
                        "default/world",
                        1,
                        peers=[
                            {"cidr": "2001:db8::/32", "except": ["2001:db8:a::/48"]},
                            {"cidr": "2001:db8:a::/64"},
                        ],
                    ),
                ],
            }
        ),
        RenderOptions(),
    ),
    "dual-stack-two-interfaces": (
        spec(
            interfaces=[NET1, NET2],
            ingress={
                "isolated": ["net1"],
                "rules": [
                    rule(
                        "default/web",
                        0,
                        peers=[
                            {"cidr": "192.0.2.21/32"},
                            {"cidr": "2001:db8:a::21/128"},
                            {"cidr": "2001:db8:a:1::/64"},
                        ],
                        ports=[{"protocol": "TCP", "port": 80}],
                    ),
                    # net2 is not isolated: its rules are ignored, its traffic untouched.
                    rule("default/web", 1, iface="net2", peers=[{"cidr": "198.51.100.21/32"}]),
                ],
            },
        ),
        RenderOptions(),
    ),
    "icmp-and-custom-rules": (
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [rule("default/web", 0, peers=[{"cidr": "192.0.2.21/32"}])],
            },
            egress={"isolated": ["net1"], "rules": []},
        ),
        RenderOptions(
            accept_icmp=True,
            accept_icmpv6=True,
            custom=CustomRules(
                v4_ingress=("ip saddr 192.0.2.1 tcp dport 22 accept",),
                v4_egress=("ip daddr 192.0.2.1 udp dport 53 accept",),
                v6_ingress=("ip6 saddr fe80::/10 udp dport 546 accept",),
                v6_egress=("ip6 daddr ff02::1:2 udp dport 547 accept",),
            ),
        ),
    ),
    "egress": (
        spec(
            interfaces=[NET1, NET2],
            egress={
                "isolated": ["net1", "net2"],
                "rules": [
                    rule(
                        "default/out",
                        0,
                        peers=[{"cidr": "192.0.2.21/32"}, {"cidr": "192.0.2.64/26"}],
                        ports=[{"protocol": "TCP", "port": 5432}],
                    ),
                    rule(
                        "default/out",
                        1,
                        iface="net2",
                        peers=[{"cidr": "198.51.100.0/24", "except": ["198.51.100.0/28"]}],
                    ),
                    rule(
                        "default/dns",
                        0,
                        iface="net2",
                        ports=[{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    ),
                ],
            },
        ),
        RenderOptions(table="mnp_egress"),
    ),
    "interface-name-sanitised": (
        spec(
            interfaces=[{"name": "net-a.1", "network": "default/net-a"}],
            ingress={
                "isolated": ["net-a.1"],
                "rules": [rule("default/web", 0, iface="net-a.1", peers=[{"cidr": "192.0.2.21/32"}])],
            },
        ),
        RenderOptions(),
    ),
}
