"""The demo's sample app: what its policy means to allow, and manifests that say the same thing."""

from __future__ import annotations

import json

from mnp.demo.app import ACCEPTS, NETWORK, NO_EGRESS, PODS, app, expected, policies

NAMES = [p.name for p in PODS]


def test_without_the_policy_every_pod_may_reach_every_other_pod() -> None:
    allowed = expected(policy=False)
    assert len(allowed) == len(NAMES) * (len(NAMES) - 1)
    assert all(allowed.values())


def test_with_the_policy_db_takes_only_backend_and_monitor_backend_only_frontend_and_monitor() -> None:
    allowed = expected(policy=True)
    blocked = sorted(pair for pair, ok in allowed.items() if not ok)
    assert blocked == [
        ("db", "backend"),
        ("db", "frontend"),
        ("db", "monitor"),
        ("frontend", "db"),
    ]


def test_the_pods_are_spread_over_both_nodes_and_both_namespaces() -> None:
    assert {p.node for p in PODS} == {"node-1", "node-2"}
    assert {p.namespace for p in PODS} == {"shop", "ops"}


def test_each_pod_serves_its_port_and_asks_for_its_addresses_on_the_demo_network() -> None:
    pods = [o for o in app() if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == NAMES
    for obj, pod in zip(pods, PODS, strict=True):
        (attachment,) = json.loads(obj["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
        assert f"{attachment['namespace']}/{attachment['name']}" == NETWORK
        assert attachment["ips"] == [f"192.0.2.{pod.host}/24", f"2001:db8::{pod.host}/64"]
        (container,) = obj["spec"]["containers"]
        assert f"TCP6-LISTEN:{pod.port}," in container["command"][1]
        assert container["ports"][0]["containerPort"] == pod.port
        assert obj["spec"]["nodeName"] == pod.node


def test_namespaces_and_the_network_come_before_the_pods() -> None:
    kinds = [o["kind"] for o in app()]
    assert kinds.index("NetworkAttachmentDefinition") < kinds.index("Pod")
    assert kinds.index("Namespace") < kinds.index("NetworkAttachmentDefinition")


def test_there_is_one_policy_per_pod_the_intent_restricts_each_for_the_demo_network() -> None:
    objs = policies()
    selected = {p["spec"]["podSelector"]["matchLabels"]["app"] for p in objs}
    assert selected == set(ACCEPTS) | NO_EGRESS
    for p in objs:
        assert p["apiVersion"] == "k8s.cni.cncf.io/v1beta1"
        assert p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/policy-for"] == "lan"
        assert p["metadata"]["namespace"] == "shop"
    db = next(p for p in objs if p["metadata"]["name"] == "db")
    assert db["spec"]["egress"] == [] and "Egress" in db["spec"]["policyTypes"]


def test_the_network_is_macvlan_on_the_node_uplink_taking_the_addresses_pods_ask_for() -> None:
    (nad,) = [o for o in app() if o["kind"] == "NetworkAttachmentDefinition"]
    assert f"{nad['metadata']['namespace']}/{nad['metadata']['name']}" == NETWORK
    config = json.loads(nad["spec"]["config"])
    assert (config["type"], config["master"], config["name"]) == ("macvlan", "eth0", "lan")
    assert config["capabilities"] == {"ips": True} and config["ipam"] == {"type": "static"}
