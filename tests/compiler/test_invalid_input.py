"""Bad input never crashes the compiler, never opens a pod, and is reported naming object and field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mnp.api.refs import ObjRef, Severity
from mnp.api.ruleset import Direction, Protocol
from mnp.compiler.compile import CompileResult
from tests.builders import compile_objs, nad, namespace, pod, policy
from tests.oracle import direction_allows

A = "default/net-a"
SERVER = {"podSelector": {"matchLabels": {"app": "server"}}}


def base() -> list[dict[str, Any]]:
    return [
        nad("net-a"),
        namespace("default"),
        pod("server", labels={"app": "server"}, nets={A: ("net1", ["192.0.2.10"])}),
        pod("client", labels={"app": "client"}, nets={A: ("net1", ["192.0.2.11"])}),
    ]


def server(result: CompileResult) -> Any:
    return result.rulesets[ObjRef("default", "server", "Pod")]


def ingress_ok(result: CompileResult, addr: str, port: int = 80, proto: Protocol = Protocol.TCP) -> bool:
    return direction_allows(server(result), Direction.INGRESS, "net1", addr, proto, port)


def fields(result: CompileResult) -> set[tuple[str, str]]:
    return {(str(d.obj), d.field) for d in result.diagnostics}


def test_a_bad_cidr_is_reported_and_its_peer_grants_nothing_while_other_peers_work() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0/33"}}, {"podSelector": {"matchLabels": {"app": "client"}}}]}]})])
    assert ("default/p", "spec.ingress[0].from[0].ipBlock.cidr") in fields(r)
    assert ingress_ok(r, "192.0.2.11")
    assert not ingress_ok(r, "10.0.0.1")


def test_a_bad_except_makes_its_block_grant_nothing() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["nope"]}}]}]})])
    assert ("default/p", "spec.ingress[0].from[0].ipBlock.except[0]") in fields(r)
    assert not ingress_ok(r, "192.0.2.11")


def test_an_unknown_protocol_is_reported_and_grants_nothing() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]})])
    assert ("default/p", "spec.ingress[0].ports[0].protocol") in fields(r)
    assert server(r).ingress.rules[0].ports == ()
    assert not ingress_ok(r, "192.0.2.11", 1)


@pytest.mark.parametrize(
    ("port", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": 80, "endPort": 79}, "endPort"),
        ({"port": "http", "endPort": 90}, "endPort"),
        ({"port": "Not_A_Name"}, "port"),
        ({"port": True}, "port"),
        ({"port": 80, "endPort": "x"}, "endPort"),
    ],
)
def test_bad_port_entries_name_the_field_and_allow_nothing(port: dict[str, Any], field: str) -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"ports": [port]}]})])
    assert ("default/p", f"spec.ingress[0].ports[0].{field}") in fields(r)
    assert not ingress_ok(r, "192.0.2.11", 80)


def test_a_bad_policy_type_isolates_both_directions() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "policyTypes": ["ingress"], "ingress": [{}]})])
    assert ("default/p", "spec.policyTypes[0]") in fields(r)
    spec = server(r)
    assert spec.ingress is not None and spec.egress is not None
    assert not direction_allows(spec, Direction.EGRESS, "net1", "192.0.2.11", Protocol.TCP, 80)


def test_a_malformed_policy_for_entry_is_reported_and_the_valid_ones_kept() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": []}, networks="net-a, a/b/c, ,Bad_Name")])
    assert {f for o, f in fields(r) if o == "default/p"} >= {
        "metadata.annotations[k8s.v1.cni.cncf.io/policy-for][1]",
        "metadata.annotations[k8s.v1.cni.cncf.io/policy-for][2]",
        "metadata.annotations[k8s.v1.cni.cncf.io/policy-for][3]",
    }
    assert not ingress_ok(r, "192.0.2.11")


def test_a_policy_without_policy_for_is_reported_and_polices_nothing() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": []}, networks=None)])
    assert ("default/p", "metadata.annotations[k8s.v1.cni.cncf.io/policy-for]") in fields(r)
    assert r.rulesets == {}


def test_a_missing_network_and_an_unsupported_cni_type_are_reported() -> None:
    objs = base() + [nad("sriov-net", cni_type="sriov"), policy("p", {**SERVER, "ingress": []}, networks="missing,sriov-net")]
    r = compile_objs(objs)
    messages = " | ".join(d.message for d in r.diagnostics)
    assert "default/missing does not exist" in messages
    assert "CNI type 'sriov', not in --network-plugins (macvlan)" in messages
    assert r.rulesets == {}  # no pod is attached to either (missing) or policed on it (sriov)
    assert compile_objs(objs, plugins=frozenset({"macvlan", "sriov"})).diagnostics != r.diagnostics


def test_a_conflist_network_is_policed_by_its_first_plugin_type() -> None:
    objs = [nad("net-a", conflist=True), *base()[1:], policy("p", {**SERVER, "ingress": []})]
    r = compile_objs(objs)
    assert r.diagnostics == ()
    assert server(r).ingress is not None


def test_a_network_whose_config_became_unreadable_keeps_its_attached_pods_policed() -> None:
    """Multus attached the pods while the NAD was fine; an edit that breaks it must not open them."""
    broken = nad("net-a")
    broken["spec"]["config"] = "{not json"
    r = compile_objs([broken, *base()[1:], policy("p", {**SERVER, "ingress": []})])
    assert any("spec.config is not JSON" in d.message and "fail closed" in d.message for d in r.diagnostics)
    assert server(r).ingress is not None and server(r).ingress.isolated == ("net1",)


def test_a_deleted_network_keeps_the_pods_still_attached_to_it_policed() -> None:
    r = compile_objs([*base()[1:], policy("p", {**SERVER, "ingress": []})])
    assert any("default/net-a does not exist" in d.message for d in r.diagnostics)
    assert server(r).ingress is not None and server(r).ingress.isolated == ("net1",)


def test_unparsable_network_status_keeps_the_pod_policed_by_interface_and_out_of_peers() -> None:
    objs = base() + [
        pod("broken", labels={"app": "server"}, nets={A: ("net1", ["192.0.2.20"])}, network_status="{oops"),
        pod("broken-peer", labels={"app": "client"}, nets={A: ("net1", ["192.0.2.21"])}, network_status='[{"name": "x", "interface": "net1", "ips": ["nope"]}]'),
        policy("p", {**SERVER, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    ]
    r = compile_objs(objs)
    status_field = "metadata.annotations[k8s.v1.cni.cncf.io/network-status]"
    from mnp.api.cluster import parse_pod
    from tests.builders import snapshot  # the pod diagnostics come from parsing

    problems = [d for o in objs if o["kind"] == "Pod" for d in parse_pod(o)[1]]
    assert {(str(d.obj), d.field) for d in problems} == {("default/broken", status_field), ("default/broken-peer", status_field)}
    broken = r.rulesets[ObjRef("default", "broken", "Pod")]
    assert broken.ingress is not None and broken.ingress.isolated == ("net1",), "a broken annotation never opens a pod"
    peers = {str(p.cidr) for rule in server(r).ingress.rules for p in rule.peers or ()}
    assert peers == {"192.0.2.11/32"}
    assert snapshot(objs).pods  # parsing did not raise


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "a string",
        {"podSelector": "x"},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}, "ingress": []},
        {"podSelector": {}, "ingress": "all"},
        {"podSelector": {}, "ingress": [None, 5, {"from": "x"}, {"from": [5, {}, {"ipBlock": 3}]}, {"ports": "x"}]},
        {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"a": 1}}}]}], "policyTypes": "Egress"},
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}]},
    ],
)
def test_garbage_policies_never_crash_and_never_open_a_pod(spec: Any) -> None:
    pol = policy("p", {})
    pol["spec"] = spec
    r = compile_objs(base() + [pol, policy("deny", {**SERVER, "ingress": []})])
    assert r.diagnostics, "garbage is reported"
    assert all(d.obj == ObjRef("default", "p", "MultiNetworkPolicy") for d in r.diagnostics)
    assert not ingress_ok(r, "192.0.2.11"), "the server stays isolated by the valid deny policy"
    assert all(d.severity in (Severity.ERROR, Severity.WARNING) for d in r.diagnostics)


def test_ipblock_combined_with_selectors_is_a_warning_and_the_block_wins() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}, "podSelector": {}}]}]})])
    assert [d.severity for d in r.diagnostics] == [Severity.WARNING]
    assert not ingress_ok(r, "192.0.2.11")
    assert ingress_ok(r, "203.0.113.9")


def test_except_outside_its_block_removes_nothing_and_is_a_warning() -> None:
    r = compile_objs(base() + [policy("p", {**SERVER, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["198.51.100.0/24"]}}]}]})])
    assert [d.field for d in r.diagnostics] == ["spec.ingress[0].from[0].ipBlock.except[0]"]
    assert ingress_ok(r, "192.0.2.11")


def test_network_status_json_form_and_default_network_entries() -> None:
    status = json.dumps([{"name": "k8s-pod-network", "interface": "eth0", "ips": ["10.0.0.1"], "default": True}, {"name": "net-a", "interface": "net1", "ips": ["192.0.2.30/24"]}])
    objs = base() + [pod("x", labels={"app": "server"}, network_status=status, networks='[{"name": "net-a"}]'), policy("p", {**SERVER, "ingress": []})]
    spec = compile_objs(objs).rulesets[ObjRef("default", "x", "Pod")]
    assert [(i.name, i.network, [str(a) for a in i.ips]) for i in spec.interfaces] == [("net1", "default/net-a", ["192.0.2.30"])]
