"""The demo's sample app: its manifests, its policy, and what the policy means to allow (all pure).

Two namespaces share one macvlan secondary network, `shop/lan`: `shop` runs frontend, backend and db,
`ops` runs monitor. Each pod serves TCP on its port on every address (socat, a host binary run in the
pod's netns). The policy is written twice on purpose: once as MultiNetworkPolicy objects for mnp to
enforce, once as the plain intent below (`ACCEPTS`, `NO_EGRESS`) from which `expected` derives the
matrix the demo checks the enforced one against.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NETWORK_NAMESPACE, NETWORK_NAME = "shop", "lan"
NETWORK = f"{NETWORK_NAMESPACE}/{NETWORK_NAME}"
POLICY_FOR = "k8s.v1.cni.cncf.io/policy-for"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


@dataclass(frozen=True, slots=True)
class DemoPod:
    """One pod of the app: where it runs, the port it serves and its addresses on `shop/lan`."""

    name: str
    namespace: str
    node: str
    port: int
    port_name: str
    host: int  # last part of its addresses: 192.0.2.<host>, 2001:db8::<host>

    @property
    def v4(self) -> str:
        return f"192.0.2.{self.host}"

    @property
    def v6(self) -> str:
        return f"2001:db8::{self.host}"  # read as hex, written like the IPv4 one

    def address(self, family: int) -> str:
        return self.v4 if family == 4 else self.v6

    @property
    def label(self) -> str:
        """How the matrix names it as a target: `db:5432`."""
        return f"{self.name}:{self.port}"


PODS = (
    DemoPod("frontend", "shop", "node-1", 80, "http", 10),
    DemoPod("backend", "shop", "node-1", 8080, "api", 20),
    DemoPod("db", "shop", "node-2", 5432, "postgres", 30),
    DemoPod("monitor", "ops", "node-2", 9100, "metrics", 40),
)
NAMESPACES = {"shop": {"team": "shop"}, "ops": {"team": "ops"}}

# The policy's intent: pod -> the pods it accepts connections from (pods not named accept everyone),
# and the pods that may open no connection at all.
ACCEPTS: Mapping[str, frozenset[str]] = {
    "db": frozenset({"backend", "monitor"}),
    "backend": frozenset({"frontend", "monitor"}),
}
NO_EGRESS = frozenset({"db"})


def expected(pods: Iterable[DemoPod] = PODS, policy: bool = True) -> dict[tuple[str, str], bool]:
    """{(from, to): may connect?} for every ordered pair of distinct pods, with or without the policy."""
    names = [p.name for p in pods]
    return {
        (src, dst): not policy or (src not in NO_EGRESS and (dst not in ACCEPTS or src in ACCEPTS[dst]))
        for src in names
        for dst in names
        if src != dst
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": NAMESPACES[name]}}


def network() -> dict[str, Any]:
    """macvlan on the node uplink (as the local cluster's NADs are), static addresses chosen per pod."""
    config = (
        f'{{"cniVersion": "0.4.0", "name": "{NETWORK_NAME}", "type": "macvlan", "mode": "bridge", '
        '"master": "eth0", "capabilities": {"ips": true}, "ipam": {"type": "static"}}'
    )
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": NETWORK_NAME, "namespace": NETWORK_NAMESPACE},
        "spec": {"config": config},
    }


def pod(p: DemoPod) -> dict[str, Any]:
    """The pod: on its node, attached to `shop/lan` as net1 with its two addresses, serving its port."""
    attachment = {
        "name": NETWORK_NAME,
        "namespace": NETWORK_NAMESPACE,
        "interface": "net1",
        "ips": [f"{p.v4}/24", f"{p.v6}/64"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "labels": {"app": p.name},
            "annotations": {NETWORKS: json.dumps([attachment])},
        },
        "spec": {
            "nodeName": p.node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "server",
                    "image": "socat",  # ignored by the local cluster: the command is a host binary
                    "command": [
                        "socat",
                        f"TCP6-LISTEN:{p.port},ipv6only=0,fork,reuseaddr",
                        "SYSTEM:echo ok",
                    ],
                    "ports": [{"name": p.port_name, "containerPort": p.port, "protocol": "TCP"}],
                }
            ],
        },
    }


def app() -> list[dict[str, Any]]:
    """Namespaces, the network and the pods, in the order a server needs them."""
    return [*(namespace(n) for n in NAMESPACES), network(), *(pod(p) for p in PODS)]


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {"name": name, "namespace": "shop", "annotations": {POLICY_FOR: NETWORK_NAME}},
        "spec": spec,
    }


def policies() -> list[dict[str, Any]]:
    """The MultiNetworkPolicies that say what ACCEPTS and NO_EGRESS say, on `shop/lan` only."""
    from_monitoring = {"namespaceSelector": {"matchLabels": NAMESPACES["ops"]}}
    return [
        # db accepts backend on its named port `postgres`, and monitoring; it opens no connection.
        _policy(
            "db",
            {
                "podSelector": {"matchLabels": {"app": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": "backend"}}}],
                        "ports": [{"port": "postgres"}],
                    },
                    {"from": [from_monitoring]},
                ],
                "egress": [],
            },
        ),
        # backend accepts frontend on TCP 8080, and monitoring.
        _policy(
            "backend",
            {
                "podSelector": {"matchLabels": {"app": "backend"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}],
                        "ports": [{"protocol": "TCP", "port": 8080}],
                    },
                    {"from": [from_monitoring]},
                ],
            },
        ),
    ]


__all__ = ["ACCEPTS", "NETWORK", "NO_EGRESS", "PODS", "DemoPod", "app", "expected", "policies"]
