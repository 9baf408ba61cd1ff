"""NetworkPolicy semantics of the compiler, table-driven: (objects, probes → allowed?).

Each probe is a new connection from one pod to another over a network; it is allowed when the
sender's ruleset allows it out and the receiver's allows it in (tests/oracle.py, DESIGN §2). The same
scenarios are the reference projects' e2e scenarios plus every semantics bullet of the core issue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from mnp.api.ruleset import Protocol
from tests.builders import compile_objs, nad, namespace, pod, policy
from tests.oracle import connection_allowed

A, B = "default/net-a", "default/net-b"


def world() -> list[dict[str, Any]]:
    """Pods on net-a (192.0.2.0/24, 2001:db8:a::/64); `other` namespace is team=blue."""

    def p(name: str, n: int, ns: str = "default", labels: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
        nets = kw.pop("nets", {A: ("net1", [f"192.0.2.{n}", f"2001:db8:a::{n}"])})
        return pod(name, ns, labels if labels is not None else {"app": name}, nets, **kw)

    return [
        nad("net-a"),
        nad("net-b"),
        namespace("default"),
        namespace("other", team="blue"),
        namespace("third", team="red"),
        p("server", 10, ports=[("http", 80, "TCP"), ("dns", 53, "UDP")]),
        p("client-a", 11),
        p("client-b", 12),
        p("client-c", 13),
        p("other-a", 21, "other", {"app": "client-a"}),
        p("other-b", 22, "other", {"app": "client-b"}),
        p("third-a", 31, "third", {"app": "client-a"}),
    ]


@dataclass(frozen=True)
class Probe:
    src: str
    dst: str
    port: int = 80
    proto: str = "TCP"
    family: int = 4
    allowed: bool = True
    network: str = A


@dataclass
class Case:
    id: str
    objs: list[dict[str, Any]]
    probes: list[Probe]
    extra: list[dict[str, Any]] = field(default_factory=list)
    replace_world: bool = False


def ok(src: str, dst: str, **kw: Any) -> Probe:
    return Probe(src, dst, allowed=True, **kw)


def no(src: str, dst: str, **kw: Any) -> Probe:
    return Probe(src, dst, allowed=False, **kw)


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def _endpoint(objs: list[dict[str, Any]], name: str, network: str, family: int) -> tuple[str, str, str, str]:
    ns, _, pname = name.rpartition("/")
    ns = ns or "default"
    for o in objs:
        if o["kind"] == "Pod" and o["metadata"]["name"] == pname and o["metadata"]["namespace"] == ns:
            for entry in json.loads(o["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]):
                if entry["name"] == network:
                    ip = next(a for a in entry["ips"] if (":" in a) == (family == 6))
                    return (ns, pname, entry["interface"], ip)
    raise AssertionError(f"no pod {name} on {network}")


def check(case: Case) -> None:
    objs = case.objs if case.replace_world else world() + case.objs
    result = compile_objs(objs)
    for pr in case.probes:
        src = _endpoint(objs, pr.src, pr.network, pr.family)
        dst = _endpoint(objs, pr.dst, pr.network, pr.family)
        got = connection_allowed(result, src, dst, Protocol(pr.proto), pr.port)
        assert got == pr.allowed, f"{case.id}: {pr} gave {got}; rulesets: {dict(result.rulesets)}"


SERVER = {"podSelector": sel(app="server")}

CASES = [
    Case("without any policy everything is allowed", [], [ok("client-a", "server"), ok("server", "client-b")]),
    Case(
        "simple ingress allows the selected peer and denies the rest, egress untouched",
        [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]})],
        [ok("client-a", "server"), no("client-b", "server"), ok("server", "client-b")],
    ),
    Case(
        "ingress rules in a list are ORed",
        [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}, {"from": [{"podSelector": sel(app="client-c")}]}]})],
        [ok("client-a", "server"), ok("client-c", "server"), no("client-b", "server")],
    ),
    Case(
        "simple egress allows one destination and leaves ingress alone",
        [policy("p", {**SERVER, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": sel(app="client-a")}]}]})],
        [ok("server", "client-a"), no("server", "client-b"), ok("client-b", "server")],
    ),
    Case(
        "egress rules in a list are ORed",
        [policy("p", {**SERVER, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": sel(app="client-a")}]}, {"to": [{"podSelector": sel(app="client-c")}]}]})],
        [ok("server", "client-a"), ok("server", "client-c"), no("server", "client-b")],
    ),
    Case(
        "stacked policies are a union",
        [
            policy("p1", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]}),
            policy("p2", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-c")}]}]}),
        ],
        [ok("client-a", "server"), ok("client-c", "server"), no("client-b", "server")],
    ),
    Case(
        "ipBlock peers of one rule",
        [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.11/32"}}, {"ipBlock": {"cidr": "192.0.2.13/32"}}]}]})],
        [ok("client-a", "server"), ok("client-c", "server"), no("client-b", "server")],
    ),
    Case(
        "ipBlock peers in a list of rules and in stacked policies",
        [
            policy("p1", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.11/32"}}]}, {"from": [{"ipBlock": {"cidr": "192.0.2.12/32"}}]}]}),
            policy("p2", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.21/32"}}]}]}),
        ],
        [ok("client-a", "server"), ok("client-b", "server"), ok("other/other-a", "server"), no("client-c", "server")],
    ),
    Case(
        "a namespace selector matching no namespace still isolates",
        [policy("p", {**SERVER, "ingress": [{"from": [{"namespaceSelector": sel(team="none")}]}]})],
        [no("client-a", "server"), no("other/other-a", "server")],
    ),
    Case(
        "peers whose selectors match nothing still isolate egress too",
        [policy("p", {**SERVER, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": sel(app="nobody")}]}]})],
        [no("server", "client-a"), ok("client-a", "server")],
    ),
    Case(
        "endPort ranges include both ends and nothing past them",
        [policy("p", {**SERVER, "ingress": [{"ports": [{"protocol": "TCP", "port": 8000, "endPort": 8010}]}]})],
        [no("client-a", "server", port=7999), ok("client-a", "server", port=8000), ok("client-a", "server", port=8010), no("client-a", "server", port=8011)],
    ),
    Case(
        "protocol-only ports allow every port of that protocol only",
        [
            policy("p", {**SERVER, "policyTypes": ["Ingress", "Egress"], "ingress": [{"ports": [{"protocol": "UDP"}]}], "egress": [{"ports": [{"protocol": "TCP"}]}]}),
        ],
        [ok("client-a", "server", proto="UDP", port=5353), no("client-a", "server", proto="TCP", port=80), ok("server", "client-a", port=9), no("server", "client-a", proto="UDP", port=53)],
    ),
    Case(
        "a port without protocol defaults to TCP",
        [policy("p", {**SERVER, "ingress": [{"ports": [{"port": 443}]}]})],
        [ok("client-a", "server", port=443), no("client-a", "server", port=443, proto="UDP")],
    ),
    Case(
        "an empty ingress rule allows everything even when another policy is specific",
        [
            policy("all", {**SERVER, "ingress": [{}]}),
            policy("specific", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}], "ports": [{"port": 80}]}]}),
        ],
        [ok("client-b", "server", port=22), ok("other/other-b", "server", proto="UDP", port=5)],
    ),
    Case(
        "deny-all stacked with a specific allow allows only that",
        [
            policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}),
            policy("allow", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}], "ports": [{"port": 80}]}]}),
        ],
        [ok("client-a", "server", port=80), no("client-a", "server", port=81), no("client-b", "server"), no("server", "client-a")],
    ),
    Case(
        "ipBlock except removes addresses from that block only",
        [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.11/32", "192.0.2.12/32"]}}]}]})],
        [no("client-a", "server"), no("client-b", "server"), ok("client-c", "server"), ok("other/other-a", "server")],
    ),
    Case(
        "except never denies what another peer of the rule allows",
        [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}, {"podSelector": sel(app="client-a")}]}]})],
        [ok("client-a", "server"), no("client-b", "server"), ok("other/other-a", "server")],
    ),
    Case(
        "except never denies what another policy allows",
        [
            policy("p1", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}}]}]}),
            policy("p2", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.12/31"}}]}]}),
        ],
        [no("client-a", "server"), ok("client-b", "server"), ok("client-c", "server"), ok("other/other-a", "server")],
    ),
    Case(
        "overlapping and nested CIDRs across peers with excepts",
        [policy("p", {**SERVER, "ingress": [
            {"from": [{"ipBlock": {"cidr": "192.0.2.0/25", "except": ["192.0.2.0/28"]}}, {"ipBlock": {"cidr": "192.0.2.12/31"}}]},
            {"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.16/28"]}}], "ports": [{"port": 22}]},
        ]})],
        [no("client-a", "server"), ok("client-a", "server", port=22), ok("client-c", "server", port=80), ok("other/other-a", "server"), ok("other/other-a", "server", port=22)],
    ),
    Case(
        "mixed selectors: both in one peer is AND, two peers are OR",
        [
            policy("and", {**SERVER, "ingress": [{"from": [{"namespaceSelector": sel(team="blue"), "podSelector": sel(app="client-a")}]}]}),
        ],
        [ok("other/other-a", "server"), no("other/other-b", "server"), no("client-a", "server"), no("third/third-a", "server")],
    ),
    Case(
        "mixed selectors as separate peers are OR",
        [policy("or", {**SERVER, "ingress": [{"from": [{"namespaceSelector": sel(team="blue")}, {"podSelector": sel(app="client-a")}]}]})],
        [ok("other/other-a", "server"), ok("other/other-b", "server"), ok("client-a", "server"), no("client-b", "server"), no("third/third-a", "server")],
    ),
    Case(
        "a podSelector-only peer is scoped to the policy's namespace",
        [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]})],
        [ok("client-a", "server"), no("other/other-a", "server"), no("third/third-a", "server")],
    ),
    Case(
        "an empty namespaceSelector selects pods of every namespace",
        [policy("p", {**SERVER, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": sel(app="client-a")}]}]})],
        [ok("client-a", "server"), ok("other/other-a", "server"), ok("third/third-a", "server"), no("other/other-b", "server")],
    ),
    Case(
        "namespaces match on kubernetes.io/metadata.name",
        [policy("p", {**SERVER, "ingress": [{"from": [{"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "third"})}]}]})],
        [ok("third/third-a", "server"), no("other/other-a", "server")],
    ),
    Case(
        "matchExpressions In NotIn Exists DoesNotExist",
        [policy("p", {**SERVER, "ingress": [
            {"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["client-a", "client-b"]}, {"key": "app", "operator": "NotIn", "values": ["client-b"]}]}}], "ports": [{"port": 1}]},
            {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}], "ports": [{"port": 2}]},
            {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}}], "ports": [{"port": 3}]},
        ]})],
        [ok("client-a", "server", port=1), no("client-b", "server", port=1), no("client-c", "server", port=1), ok("other/other-b", "server", port=2), no("client-a", "server", port=2), ok("client-b", "server", port=3), no("third/third-a", "server", port=3)],
    ),
    Case(
        "an empty podSelector selects every pod of the policy namespace",
        [policy("p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]})],
        [ok("client-a", "client-b"), no("client-c", "client-b"), no("client-b", "server"), ok("server", "other/other-a")],
    ),
    Case(
        "policyTypes default: egress rules make the policy isolate egress too",
        [policy("p", {**SERVER, "egress": [{"to": [{"podSelector": sel(app="client-a")}]}]})],
        [no("client-a", "server"), ok("server", "client-a"), no("server", "client-b")],
    ),
    Case(
        "policyTypes default: an empty egress list does not isolate egress",
        [policy("p", {**SERVER, "egress": []})],
        [no("client-a", "server"), ok("server", "client-b")],
    ),
    Case(
        "policyTypes Egress alone leaves ingress open",
        [policy("p", {**SERVER, "policyTypes": ["Egress"]})],
        [ok("client-a", "server"), no("server", "client-a")],
    ),
    Case(
        "named ports resolve on the policed pod for ingress",
        [policy("p", {**SERVER, "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]}]})],
        [ok("client-a", "server", port=80), ok("client-a", "server", port=53, proto="UDP"), no("client-a", "server", port=53), no("client-a", "server", port=8080)],
    ),
    Case(
        "a named port that resolves nowhere grants nothing and still isolates",
        [policy("p", {**SERVER, "ingress": [{"ports": [{"port": "nope"}]}]})],
        [no("client-a", "server", port=80), no("client-a", "server", port=1)],
    ),
    Case(
        "named ports resolve on each peer for egress",
        [
            pod("web-1", labels={"tier": "web"}, nets={A: ("net1", ["192.0.2.41"])}, ports=[("http", 8080, "TCP")]),
            pod("web-2", labels={"tier": "web"}, nets={A: ("net1", ["192.0.2.42"])}, ports=[("http", 9090, "TCP")]),
            pod("web-3", labels={"tier": "web"}, nets={A: ("net1", ["192.0.2.43"])}),
            policy("p", {"podSelector": sel(app="client-a"), "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": sel(tier="web")}], "ports": [{"port": "http"}]}]}),
        ],
        [ok("client-a", "web-1", port=8080), no("client-a", "web-1", port=9090), ok("client-a", "web-2", port=9090), no("client-a", "web-2", port=8080), no("client-a", "web-3", port=8080)],
    ),
    Case(
        "named egress ports to any destination resolve on every pod that defines them",
        [policy("p", {"podSelector": sel(app="client-a"), "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}, {"port": 22}]}]})],
        [ok("client-a", "server", port=80), ok("client-a", "client-b", port=22), no("client-a", "client-b", port=80)],
    ),
    Case(
        "IPv6 peers and ports",
        [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}, {"ipBlock": {"cidr": "2001:db8:a::10:0/112"}}, {"ipBlock": {"cidr": "2001:db8:a::/120", "except": ["2001:db8:a::12/128"]}}], "ports": [{"port": 80}]}]})],
        [ok("client-a", "server", family=6), no("client-b", "server", family=6), ok("client-c", "server", family=6), no("client-c", "server", family=6, port=81)],
    ),
    Case(
        "dual stack: a selector peer is allowed on both families, an IPv4 block only on IPv4",
        [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}, {"ipBlock": {"cidr": "192.0.2.12/32"}}]}]})],
        [ok("client-a", "server", family=4), ok("client-a", "server", family=6), ok("client-b", "server", family=4), no("client-b", "server", family=6)],
    ),
    Case(
        "hostNetwork pods are never policed and never peers",
        [
            pod("host", labels={"app": "client-a"}, nets={A: ("net1", ["192.0.2.50"])}, host_network=True),
            policy("p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]}),
        ],
        [ok("client-a", "server"), no("host", "server"), ok("client-b", "host")],
    ),
    Case(
        "pods not Running are not peers",
        [
            pod("pending", labels={"app": "client-a"}, nets={A: ("net1", ["192.0.2.51"])}, phase="Pending"),
            policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]}),
        ],
        [ok("client-a", "server"), no("pending", "server")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_semantics(case: Case) -> None:
    check(case)


def test_multi_namespace_multi_network_policy_counts_peers_on_every_named_network() -> None:
    """policy-for names net-a (bare) and other/net-c (qualified); peers' IPs on both count on both."""
    objs = [
        nad("net-a"),
        nad("net-b"),
        nad("net-c", "other"),
        namespace("default"),
        namespace("other", team="blue"),
        pod("server", labels={"app": "server"}, nets={A: ("net1", ["192.0.2.10"]), "other/net-c": ("net2", ["198.51.100.10"]), B: ("net3", ["203.0.113.10"])}),
        pod("peer", "other", {"app": "peer"}, nets={"other/net-c": ("net1", ["198.51.100.20"]), B: ("net2", ["203.0.113.20"])}),
        pod("stranger", "other", {"app": "stranger"}, nets={A: ("net1", ["192.0.2.30"])}),
        policy("p", {"podSelector": sel(app="server"), "ingress": [{"from": [{"namespaceSelector": sel(team="blue"), "podSelector": sel(app="peer")}]}]}, networks="net-a, other/net-c"),
    ]
    result = compile_objs(objs)
    server = result.rulesets[_ref("default", "server")]
    assert server.ingress is not None and server.ingress.isolated == ("net1", "net2")
    allowed = {(r.interface, str(p.cidr)) for r in server.ingress.rules for p in r.peers or ()}
    # The peer's address on net-c counts on both policed interfaces; its net-b address never counts.
    assert allowed == {("net1", "198.51.100.20/32"), ("net2", "198.51.100.20/32")}
    assert [i.name for i in server.interfaces] == ["net1", "net2"], "net3 (net-b) is not policed"
    assert server.policies == ("default/p",)


def test_an_interface_on_another_network_is_left_untouched() -> None:
    objs = world() + [
        pod("two", labels={"app": "two"}, nets={A: ("net1", ["192.0.2.60"]), B: ("net2", ["198.51.100.60"])}),
        policy("p", {"podSelector": sel(app="two"), "policyTypes": ["Ingress", "Egress"]}),
    ]
    spec = compile_objs(objs).rulesets[_ref("default", "two")]
    assert spec.ingress is not None and spec.ingress.isolated == ("net1",)
    assert spec.egress is not None and spec.egress.isolated == ("net1",)
    assert [i.name for i in spec.interfaces] == ["net1"]


def test_pods_without_network_status_are_never_policed_and_never_peers() -> None:
    objs = world() + [
        pod("bare", labels={"app": "client-a"}),
        policy("p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]}),
    ]
    result = compile_objs(objs)
    assert _ref("default", "bare") not in result.rulesets
    peers = {str(p.cidr) for r in result.rulesets[_ref("default", "server")].ingress.rules for p in r.peers or ()}  # type: ignore[union-attr]
    assert peers == {"192.0.2.11/32", "2001:db8:a::11/128"}


def test_pods_with_several_interfaces_on_one_network_are_policed_on_each() -> None:
    status = json.dumps([
        {"name": A, "interface": "net1", "ips": ["192.0.2.70"]},
        {"name": A, "interface": "net2", "ips": ["192.0.2.71"]},
    ])
    objs = world() + [
        pod("multi", labels={"app": "multi"}, network_status=status, networks="net-a@net1,net-a@net2"),
        policy("p", {"podSelector": sel(app="multi"), "ingress": [{"from": [{"podSelector": sel(app="client-a")}]}]}),
        policy("q", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="multi")}]}]}),
    ]
    result = compile_objs(objs)
    multi = result.rulesets[_ref("default", "multi")]
    assert multi.ingress is not None and multi.ingress.isolated == ("net1", "net2")
    assert {r.interface for r in multi.ingress.rules} == {"net1", "net2"}
    server_peers = {str(p.cidr) for r in result.rulesets[_ref("default", "server")].ingress.rules for p in r.peers or ()}  # type: ignore[union-attr]
    assert server_peers == {"192.0.2.70/32", "192.0.2.71/32"}


def test_a_peer_list_that_selects_nothing_is_empty_not_omitted() -> None:
    objs = world() + [policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": sel(app="nobody")}], "ports": [{"port": "nope"}]}]})]
    spec = compile_objs(objs).rulesets[_ref("default", "server")]
    assert spec.ingress is not None
    assert [(r.peers, r.ports) for r in spec.ingress.rules] == [((), ())]


def _ref(ns: str, name: str) -> Any:
    from mnp.api.refs import ObjRef

    return ObjRef(ns, name, "Pod")
