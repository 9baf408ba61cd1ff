"""The controller end to end on one 2-node local cluster: `mnp controller` and `mnp agent` processes,
MultiNetworkPolicies applied with kubectl, `mnp local wait` after each change, then real TCP/UDP
between pods (allowed and denied flows) and `nft list tables` in the pods no policy selects.

The scenarios follow the reference projects' e2e suites (simple ingress/egress, lists, stacked
policies, ipBlock with except, namespaceSelector with no pods, port ranges, protocol-only ports,
deny-all and accept-all with a specific allow, multi-namespace, multi-network) and add what they
miss: peers that come and go, policy-for changes, a NAD created after its policy, a re-created
pod, policy status and Events, controller restarts and leader failover.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import local_cluster
from mnp_e2e import E2E, Flow, PodSpec, nad, namespace, policy

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
RESYNC_S = 5.0  # the controller's --resync-period
NODES = ("node-1", "node-2")

PODS = (
    PodSpec("srv", "node-1", {"lan": ["192.0.2.10", "2001:db8:1::10"], "lan2": ["198.51.100.10"]}),
    PodSpec("a", "node-2", {"lan": ["192.0.2.11", "2001:db8:1::11"], "lan2": ["198.51.100.11"]}),
    PodSpec("b", "node-2", {"lan": ["192.0.2.12", "2001:db8:1::12"], "lan2": ["198.51.100.12"]}),
    PodSpec("c", "node-1", {"lan": ["192.0.2.13"]}),
    PodSpec("d", "node-2", {"lan": ["192.0.2.14"]}),
    PodSpec("x", "node-1", {"default/lan": ["192.0.2.21"]}, namespace="blue"),
    PodSpec("z", "node-2", {"default/lan": ["192.0.2.22"]}, namespace="green"),
)


@pytest.fixture(scope="module")
def env() -> Iterator[E2E]:
    with local_cluster(nodes=2) as cluster:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        e = E2E(cluster, PODS)
        try:
            e.apply(
                nad("lan"),
                nad("lan2"),
                namespace("blue", {"team": "blue"}),
                namespace("green"),
                namespace("empty", {"team": "empty"}),
            )
            e.apply(*(p.manifest() for p in PODS))
            for node in NODES:
                e.procs.start_agent(node)
            e.procs.start_controller()
            e.wait()
            yield e
        finally:
            e.procs.stop_all()


@pytest.fixture(autouse=True)
def clean(env: E2E) -> Iterator[None]:
    """Each test starts with the controller running, no policy, no ruleset and no table."""
    yield
    for name in [n for n in env.procs.procs if n.startswith("leader-")]:
        env.procs.stop(name)
    if not env.procs.running("controller"):
        env.procs.procs.pop("controller", None)
        env.procs.start_controller()
    env.kubectl("delete", "multi-policy", "--all", "-A")
    env.until("every ruleset to be deleted", lambda: not env.rulesets())
    pods = list(env.pods)
    env.until("every table to be removed", lambda: not any(env.tables(*pods).values()))


def selects(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def ingress(name: str, app: str, *rules: dict[str, Any], networks: str = "lan") -> dict[str, Any]:
    """A policy in default for the pods `app=<app>` with these ingress rules."""
    return policy(name, {"podSelector": selects(app=app), "ingress": list(rules)}, networks=networks)


def from_pods(*apps: str) -> list[dict[str, Any]]:
    return [{"podSelector": selects(app=a)} for a in apps]


def others(*selected: str) -> list[str]:
    return [p for p in (s.name for s in PODS) if p not in selected]


def policy_row(e: E2E, name: str) -> list[str]:
    out = e.kubectl("get", "multi-policy", "-A")
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["NAMESPACE", "NAME", "ACCEPTED", "ENFORCED", "SELECTED"], header
    return next(r.split() for r in rows if r.split()[1] == name)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def invalid_policy_events(e: E2E, name: str) -> list[dict[str, Any]]:
    """The InvalidPolicy Events on this policy object (not on an earlier one of the same name)."""
    uid = e.json("multi-policy", name)["metadata"]["uid"]
    events = e.json("events", "-n", "default", "--field-selector", f"involvedObject.name={name}")
    return [
        ev
        for ev in events["items"]
        if ev["reason"] == "InvalidPolicy" and ev["involvedObject"].get("uid") == uid
    ]


# ---- static cases -----------------------------------------------------------------------------------


def test_simple_ingress_v4_and_v6_with_policy_status(env: E2E) -> None:
    env.apply(ingress("from-a", "srv", {"from": from_pods("a")}))
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("a", "srv", family=6): True,
            Flow("a", "srv", 9090, "udp"): True,
            Flow("b", "srv"): False,
            Flow("b", "srv", family=6): False,
            Flow("c", "srv"): False,
            Flow("x", "srv"): False,
            Flow("srv", "b"): True,  # egress is not isolated
            Flow("srv", "b", family=6): True,
            Flow("b", "a"): True,
        }
    )
    assert env.has_table("srv")
    env.assert_no_table(*others("srv"))
    assert policy_row(env, "from-a")[:5] == ["default", "from-a", "True", "True", "1"]
    status = env.json("multi-policy", "from-a")["status"]
    assert (status["selectedPods"], status["enforcedPods"], status["failedPods"]) == (1, 1, 0)
    assert condition({"status": status}, "Accepted")["reason"] == "Accepted"
    assert condition({"status": status}, "Enforced")["reason"] == "Enforced"
    ruleset = env.rulesets()["default/srv"]
    assert ruleset["metadata"]["labels"]["mnp.dev/node"] == "node-1"
    assert ruleset["spec"]["policies"] == ["default/from-a"]
    assert "egress" not in ruleset["spec"]


def test_simple_egress_to_one_address(env: E2E) -> None:
    env.apply(
        policy(
            "a-to-srv",
            {
                "podSelector": selects(app="a"),
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]}],
            },
        )
    )
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("a", "srv", 9090, "udp"): True,
            Flow("a", "srv", family=6): False,
            Flow("a", "b"): False,
            Flow("a", "c"): False,
            Flow("b", "a"): True,  # ingress is not isolated (replies pass)
            Flow("srv", "a"): True,
        }
    )
    assert env.has_table("a")
    env.assert_no_table(*others("a"))


def test_ingress_list_then_stacked_policies(env: E2E) -> None:
    env.apply(ingress("list", "srv", {"from": from_pods("a")}, {"from": from_pods("b")}))
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("b", "srv"): True,
            Flow("b", "srv", 9090, "udp"): True,
            Flow("c", "srv"): False,
            Flow("d", "srv"): False,
        }
    )
    env.assert_no_table(*others("srv"))

    env.kubectl("delete", "multi-policy", "list")
    env.apply(
        ingress("stack-1", "srv", {"from": from_pods("a"), "ports": [{"port": 8080}]}),
        ingress("stack-2", "srv", {"from": from_pods("c")}),
    )
    env.wait()
    assert env.rulesets()["default/srv"]["spec"]["policies"] == ["default/stack-1", "default/stack-2"]
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("a", "srv", 9090): False,
            Flow("c", "srv"): True,
            Flow("c", "srv", 9090): True,
            Flow("c", "srv", 9090, "udp"): True,
            Flow("b", "srv"): False,
        }
    )
    env.assert_no_table(*others("srv"))


def test_ipblock_with_except_never_denies_what_another_policy_allows(env: E2E) -> None:
    env.apply(
        ingress(
            "block", "srv", {"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.12/32"]}}]}
        )
    )
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("c", "srv"): True,
            Flow("x", "srv"): True,  # another namespace, inside the block
            Flow("b", "srv"): False,  # excepted
            Flow("a", "srv", family=6): False,  # the block is IPv4 only
        }
    )
    env.apply(ingress("allow-b", "srv", {"from": from_pods("b")}))
    env.wait()
    env.flows({Flow("b", "srv"): True, Flow("a", "srv"): True, Flow("b", "srv", family=6): True})
    env.assert_no_table(*others("srv"))


def test_a_namespace_selector_matching_a_namespace_without_pods_isolates(env: E2E) -> None:
    env.apply(ingress("nobody", "srv", {"from": [{"namespaceSelector": selects(team="empty")}]}))
    env.wait()
    rules = env.rulesets()["default/srv"]["spec"]["ingress"]["rules"]
    assert rules and all(r["peers"] == [] for r in rules), rules
    env.flows(
        {
            Flow("a", "srv"): False,
            Flow("a", "srv", family=6): False,
            Flow("b", "srv", 9090, "udp"): False,
            Flow("c", "srv"): False,
            Flow("x", "srv"): False,
            Flow("srv", "a"): True,
        }
    )
    assert policy_row(env, "nobody")[2:5] == ["True", "True", "1"]
    env.assert_no_table(*others("srv"))


def test_port_range_and_protocol_only_ports(env: E2E) -> None:
    env.apply(
        ingress(
            "ports",
            "srv",
            {"ports": [{"protocol": "TCP", "port": 8000, "endPort": 8085}]},
            {"ports": [{"protocol": "UDP"}]},
        ),
        policy(
            "a-tcp-only",
            {
                "podSelector": selects(app="a"),
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP"}]}],
            },
        ),
    )
    env.wait()
    env.flows(
        {
            Flow("b", "srv"): True,  # 8080 in 8000-8085
            Flow("b", "srv", family=6): True,
            Flow("b", "srv", 9090): False,  # out of range
            Flow("b", "srv", 9090, "udp"): True,  # every UDP port
            Flow("a", "srv"): True,
            Flow("a", "srv", 9090, "udp"): False,  # a may send TCP only
            Flow("a", "b", 9090): True,  # any TCP port
            Flow("a", "b", 9090, "udp"): False,
        }
    )
    assert env.tables("srv", "a") == {"srv": True, "a": True}
    env.assert_no_table(*others("srv", "a"))


def test_deny_all_with_a_specific_allow(env: E2E) -> None:
    env.apply(
        policy("deny-all", {"podSelector": selects(app="srv"), "policyTypes": ["Ingress"], "ingress": []}),
        ingress("allow-a-8080", "srv", {"from": from_pods("a"), "ports": [{"port": 8080}]}),
    )
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("a", "srv", family=6): True,
            Flow("a", "srv", 9090): False,
            Flow("a", "srv", 9090, "udp"): False,
            Flow("b", "srv"): False,
            Flow("c", "srv"): False,
        }
    )
    env.assert_no_table(*others("srv"))


def test_accept_all_with_a_specific_policy(env: E2E) -> None:
    env.apply(
        ingress("accept-all", "srv", {}),
        ingress("only-a-8080", "srv", {"from": from_pods("a"), "ports": [{"port": 8080}]}),
    )
    env.wait()
    assert env.has_table("srv")
    env.flows(
        {
            Flow("a", "srv", 9090): True,
            Flow("b", "srv"): True,
            Flow("b", "srv", 9090, "udp"): True,
            Flow("b", "srv", family=6): True,
            Flow("c", "srv", 9090): True,
            Flow("x", "srv"): True,
        }
    )
    env.assert_no_table(*others("srv"))


def test_multi_namespace_peers_by_namespace_label(env: E2E) -> None:
    env.apply(
        # A podSelector-only peer means pods of the policy's namespace: x is in blue.
        ingress(
            "ns-peers",
            "srv",
            {"from": from_pods("x"), "ports": [{"port": 8080}]},
            {"from": [{"namespaceSelector": selects(team="blue")}], "ports": [{"port": 9090}]},
        ),
        policy(
            "x-from-default-a",
            {
                "podSelector": selects(app="x"),
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": selects(**{"kubernetes.io/metadata.name": "default"}),
                                "podSelector": selects(app="a"),
                            }
                        ]
                    }
                ],
            },
            networks="default/lan",
            namespace="blue",
        ),
    )
    env.wait()
    env.flows(
        {
            Flow("x", "srv"): False,
            Flow("x", "srv", 9090): True,
            Flow("a", "srv", 9090): False,
            Flow("z", "srv", 9090): False,
            Flow("a", "x"): True,
            Flow("b", "x"): False,
            Flow("z", "x"): False,
        }
    )
    assert env.tables("srv", "x") == {"srv": True, "x": True}
    env.assert_no_table(*others("srv", "x"))


def test_multi_network_policy_leaves_other_networks_alone_and_follows_policy_for(env: E2E) -> None:
    spec = {"podSelector": selects(app="srv"), "ingress": [{"from": from_pods("a")}]}
    env.apply(policy("lan2-only", spec, networks="lan2"))
    env.wait()
    interfaces = env.rulesets()["default/srv"]["spec"]["interfaces"]
    assert [i["network"] for i in interfaces] == ["default/lan2"]
    env.flows(
        {
            Flow("a", "srv", network="lan2"): True,
            Flow("b", "srv", network="lan2"): False,
            Flow("b", "srv", 9090, "udp", network="lan2"): False,
            Flow("b", "srv"): True,  # lan is untouched
            Flow("b", "srv", family=6): True,
            Flow("c", "srv"): True,
        }
    )
    env.assert_no_table(*others("srv"))

    # policy-for is an annotation: the generation does not move, so wait for the ruleset first.
    env.apply(policy("lan2-only", spec, networks="lan"))
    env.until("the ruleset to follow policy-for", lambda: '"default/lan"' in env.ruleset_text("srv"))
    assert '"default/lan2"' not in env.ruleset_text("srv")
    env.wait()
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("b", "srv"): False,
            Flow("b", "srv", family=6): False,
            Flow("c", "srv"): False,
            Flow("b", "srv", network="lan2"): True,  # lan2 is open again
            Flow("b", "srv", 9090, "udp", network="lan2"): True,
        }
    )
    env.assert_no_table(*others("srv"))

    # And from lan back to lan2.
    env.apply(policy("lan2-only", spec, networks="lan2"))
    env.until("the ruleset to follow policy-for", lambda: '"default/lan2"' in env.ruleset_text("srv"))
    assert '"default/lan"' not in env.ruleset_text("srv")
    env.wait()
    env.flows(
        {
            Flow("a", "srv", network="lan2"): True,
            Flow("b", "srv", network="lan2"): False,
            Flow("b", "srv"): True,
            Flow("b", "srv", family=6): True,
            Flow("c", "srv", 9090, "udp"): True,
        }
    )


# ---- dynamic cases ----------------------------------------------------------------------------------


def test_a_pod_label_change_makes_it_a_peer_and_then_not(env: E2E) -> None:
    env.apply(
        ingress("friends", "srv", {"from": [{"podSelector": selects(role="friend")}]}),
    )
    env.wait()
    env.flows({Flow("c", "srv"): False, Flow("a", "srv"): False})
    env.kubectl("label", "pod", "c", "role=friend")
    env.until("c to become a peer", lambda: '"192.0.2.13/32"' in env.ruleset_text("srv"))
    env.wait()
    env.flows({Flow("c", "srv"): True, Flow("c", "srv", 9090, "udp"): True, Flow("a", "srv"): False})
    env.kubectl("label", "pod", "c", "role-")
    env.until("c to stop being a peer", lambda: "192.0.2.13" not in env.ruleset_text("srv"))
    env.wait()
    env.flows({Flow("c", "srv"): False, Flow("a", "srv"): False})
    env.assert_no_table(*others("srv"))


def test_namespace_selector_peers_follow_new_pods_and_namespace_labels(env: E2E) -> None:
    env.apply(ingress("blue-team", "srv", {"from": [{"namespaceSelector": selects(team="blue")}]}))
    env.wait()
    env.flows({Flow("x", "srv"): True, Flow("z", "srv"): False, Flow("a", "srv"): False})

    y = PodSpec("y", "node-2", {"default/lan": ["192.0.2.23"]}, namespace="blue")
    env.add(y)
    env.apply(y.manifest())
    env.until("the new pod in blue to become a peer", lambda: '"192.0.2.23/32"' in env.ruleset_text("srv"))
    env.wait()
    env.flows({Flow("y", "srv"): True, Flow("x", "srv"): True, Flow("z", "srv"): False})

    env.kubectl("label", "namespace", "green", "team=blue")
    try:
        env.until("green's pod to become a peer", lambda: '"192.0.2.22/32"' in env.ruleset_text("srv"))
        env.wait()
        env.flows({Flow("z", "srv"): True, Flow("a", "srv"): False})
    finally:
        env.kubectl("label", "namespace", "green", "team-")
    env.until("green's pod to stop being a peer", lambda: "192.0.2.22" not in env.ruleset_text("srv"))
    env.wait()
    env.flows({Flow("z", "srv"): False, Flow("y", "srv"): True})
    env.assert_no_table(*others("srv"), "y")


def test_a_policy_edited_then_deleted(env: E2E) -> None:
    env.apply(ingress("edited", "srv", {"from": from_pods("a")}))
    env.wait()
    env.flows({Flow("a", "srv"): True, Flow("b", "srv"): False})
    generation = env.json("multi-policy", "edited")["metadata"]["generation"]
    env.apply(ingress("edited", "srv", {"from": from_pods("b")}))
    env.wait()
    assert env.json("multi-policy", "edited")["status"]["observedGeneration"] == generation + 1
    env.flows({Flow("a", "srv"): False, Flow("b", "srv"): True, Flow("b", "srv", family=6): True})
    env.kubectl("delete", "multi-policy", "edited")
    env.until("the ruleset to be deleted", lambda: "default/srv" not in env.rulesets())
    env.until("the table to be removed", lambda: not env.has_table("srv"))
    env.flows({Flow("a", "srv"): True, Flow("b", "srv"): True, Flow("c", "srv", 9090, "udp"): True})


def test_a_nad_created_after_its_policy(env: E2E) -> None:
    env.apply(
        ingress(
            "late", "late-srv", {"from": from_pods("late-cli"), "ports": [{"port": 8080}]}, networks="lan3"
        )
    )
    env.wait()
    assert env.json("multi-policy", "late")["status"]["selectedPods"] == 0
    # The local kubelet attaches networks at pod start: the pods wait for the NAD (Pending).
    late = (
        PodSpec("late-srv", "node-1", {"lan3": ["203.0.113.10"]}),
        PodSpec("late-cli", "node-2", {"lan3": ["203.0.113.11"]}),
    )
    for p in late:
        env.add(p)
    env.apply(*(p.manifest() for p in late))
    env.until(
        "the pods to wait for their NAD",
        lambda: env.cluster.pod("late-srv").get("status", {}).get("phase") == "Pending",
    )
    assert "default/late-srv" not in env.rulesets()
    env.apply(nad("lan3"))
    env.until("the ruleset of the late pod", lambda: '"203.0.113.11/32"' in env.ruleset_text("late-srv"))
    env.wait()
    env.flows(
        {
            Flow("late-cli", "late-srv", network="lan3"): True,
            Flow("late-cli", "late-srv", 9090, network="lan3"): False,
            Flow("late-cli", "late-srv", 9090, "udp", network="lan3"): False,
            Flow("late-srv", "late-cli", 9090, "udp", network="lan3"): True,
        }
    )
    env.until(
        "the policy to be accepted and enforced",
        lambda: policy_row(env, "late")[2:5] == ["True", "True", "1"],
        timeout=15,
    )
    env.assert_no_table(*others(), "late-cli")


def test_a_pod_recreated_with_a_new_address(env: E2E) -> None:
    env.apply(ingress("from-d", "srv", {"from": from_pods("d")}))
    env.wait()
    env.flows({Flow("d", "srv"): True, Flow("b", "srv"): False})
    env.kubectl("delete", "pod", "d", "--wait=true", "--timeout=60s")
    moved = PodSpec("d", "node-1", {"lan": ["192.0.2.15"]})
    env.add(moved)
    env.apply(moved.manifest())
    env.until(
        "the ruleset to follow the new address",
        lambda: '"192.0.2.15/32"' in (text := env.ruleset_text("srv")) and "192.0.2.14" not in text,
    )
    env.wait()
    env.flows({Flow("d", "srv"): True, Flow("d", "srv", 9090, "udp"): True, Flow("b", "srv"): False})
    env.assert_no_table(*others("srv"))


def test_a_policed_pod_recreated_under_the_same_name_gets_a_ruleset_for_the_new_pod(env: E2E) -> None:
    env.apply(ingress("srv-from-a", "srv", {"from": from_pods("a")}))
    env.wait()
    old_uid = env.cluster.pod("srv")["metadata"]["uid"]
    env.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    spec = env.pods["srv"]
    env.add(spec)  # forgets the old netns
    env.apply(spec.manifest())
    env.cluster.wait_running("srv")
    new_uid = env.cluster.pod("srv")["metadata"]["uid"]
    assert new_uid != old_uid

    def names_the_new_pod() -> bool:
        r = env.rulesets().get("default/srv")
        return r is not None and r["spec"]["podUID"] == new_uid

    env.until("the ruleset to name the new pod", names_the_new_pod)
    env.wait()
    ruleset = env.rulesets()["default/srv"]
    assert [o["uid"] for o in ruleset["metadata"]["ownerReferences"]] == [new_uid]
    env.flows({Flow("a", "srv"): True, Flow("b", "srv"): False, Flow("c", "srv", 9090, "udp"): False})
    env.assert_no_table(*others("srv"))


# ---- status, restarts, failover ---------------------------------------------------------------------


BAD = ingress("bad", "c", {"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]})


def test_an_invalid_policy_is_reported_once_and_its_pod_is_isolated(env: E2E) -> None:
    applied_at = time.monotonic()
    env.apply(BAD)
    env.wait()
    status = env.json("multi-policy", "bad")["status"]
    accepted = condition({"status": status}, "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "Invalid"
    assert "spec.ingress[0].from[0].ipBlock.cidr" in accepted["message"], accepted
    assert policy_row(env, "bad")[2:5] == ["False", "True", "1"]
    env.flows(
        {
            Flow("a", "c"): False,
            Flow("srv", "c"): False,
            Flow("x", "c", 9090, "udp"): False,
            Flow("c", "a"): True,
        }
    )
    env.assert_no_table(*others("c"))
    time.sleep(max(0.0, applied_at + 2.5 * RESYNC_S - time.monotonic()))  # several resync passes
    events = invalid_policy_events(env, "bad")
    assert len(events) == 1 and events[0].get("count", 1) == 1, events
    assert "spec.ingress[0].from[0].ipBlock.cidr" in events[0]["message"]
    assert events[0]["involvedObject"]["kind"] == "MultiNetworkPolicy"


def test_controller_restarts_remove_what_went_and_write_nothing_otherwise(env: E2E) -> None:
    env.apply(
        ingress("keep", "srv", {"from": from_pods("a")}),
        ingress("gone", "b", {"from": from_pods("a")}),
        BAD,
    )
    env.wait()
    env.flows({Flow("c", "b"): False, Flow("a", "b"): True, Flow("c", "srv"): False})
    env.procs.stop("controller", signal.SIGKILL)
    env.kubectl("delete", "multi-policy", "gone")
    time.sleep(1)
    assert "default/b" in env.rulesets() and env.has_table("b"), (
        "nobody removes it while the controller is down"
    )
    env.procs.start_controller()
    env.until("the deleted policy's ruleset to go", lambda: "default/b" not in env.rulesets())
    env.until("its table to go", lambda: not env.has_table("b"))
    assert "rulesets written" in env.procs.log("controller")  # what the no-op restart below must not log
    env.wait()
    env.flows({Flow("c", "b"): True, Flow("c", "srv"): False, Flow("a", "srv"): True, Flow("a", "c"): False})

    # A restart with nothing changed writes no ruleset, and raises no new Event.
    def versions() -> dict[str, str]:
        return {k: r["metadata"]["resourceVersion"] for k, r in env.rulesets().items()}

    before = versions()
    assert set(before) == {"default/srv", "default/c"}
    env.procs.stop("controller")
    env.procs.start_controller()
    env.until(
        "the new controller to sync", lambda: "controller synced its watches" in env.procs.log("controller")
    )
    time.sleep(2.2 * RESYNC_S)
    assert versions() == before, "a no-op restart rewrote rulesets"
    assert "rulesets written" not in env.procs.log("controller")
    events = invalid_policy_events(env, "bad")
    assert len(events) == 1 and events[0].get("count", 1) == 1, events


def test_a_ruleset_edited_by_hand_is_restored_without_waiting_for_a_resync(env: E2E) -> None:
    """A ruleset whose spec someone else changed is drift like a deleted one: restored at once, not at
    the next full pass (300 s by default), since the agent enforces whatever the spec says."""
    env.procs.stop("controller")
    env.procs.start_controller(resync_period=300)
    try:
        env.apply(ingress("tampered", "srv", {"from": from_pods("a")}))
        env.wait()
        want = env.rulesets()["default/srv"]["spec"]
        any_peer = {k: v for k, v in want["ingress"]["rules"][0].items() if k != "peers"}
        patched = env.kubectl(
            "patch",
            "pnr",
            "srv",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"ingress": {"rules": [any_peer]}}}),
            "-o",
            "json",
        )
        # What the patch stored (read back later, the controller may already have restored it).
        assert json.loads(patched)["spec"] != want
        env.until(
            "the controller to restore the ruleset",
            lambda: env.rulesets()["default/srv"]["spec"] == want,
            timeout=15,
        )
        env.wait()
        env.flows({Flow("a", "srv"): True, Flow("b", "srv"): False})
    finally:
        env.procs.stop("controller")
        env.procs.start_controller()


def _holder(env: E2E) -> str:
    out = env.kubectl("get", "lease", "mnp-controller", "-n", "default", "-o", "json", check=False)
    return str(json.loads(out).get("spec", {}).get("holderIdentity") or "") if out else ""


def test_leader_failover_enforces_changes_made_after_the_leader_died(env: E2E) -> None:
    env.procs.stop("controller")
    procs = {
        name: env.procs.start_controller(name, "--leader-elect", "--leader-election-namespace", "default")
        for name in ("leader-1", "leader-2")
    }
    ids = {name: p.pid for name, p in procs.items()}

    def holder_name() -> str | None:
        holder = _holder(env)
        return next((n for n, pid in ids.items() if holder.endswith(f"_{pid}")), None)

    env.until("one replica to hold the lease", lambda: holder_name() is not None)
    leader = holder_name()
    assert leader is not None
    standby = next(n for n in ids if n != leader)
    env.apply(ingress("failover", "srv", {"from": from_pods("a")}))
    env.wait()
    env.flows({Flow("a", "srv"): True, Flow("b", "srv"): False})
    assert holder_name() == leader
    assert "leadership acquired" in env.procs.log(leader)
    assert "leadership acquired" not in env.procs.log(standby)
    assert "controller synced its watches" not in env.procs.log(standby)

    env.procs.stop(leader, signal.SIGKILL)
    killed = time.monotonic()
    env.apply(ingress("failover", "srv", {"from": from_pods("b")}))
    env.until("the standby to take the lease", lambda: holder_name() == standby, timeout=40)
    took = time.monotonic() - killed
    assert took < 15 + 8, f"the standby took {took:.1f}s to lead"
    env.wait()
    env.flows({Flow("a", "srv"): False, Flow("b", "srv"): True})
    env.assert_no_table(*others("srv"))


def _faults(env: E2E, **switches: Any) -> dict[str, Any]:
    out = env.kubectl("create", "--raw", "/mnp-admin/faults", "-f", "-", input=json.dumps(switches))
    return dict(json.loads(out)) if out.strip() else {}


def test_a_ruleset_write_the_api_server_keeps_refusing_is_retried_with_backoff_then_lands(env: E2E) -> None:
    """A refused write (422) is not sent again every pass: the controller backs off (0.5, 1, 2, 4 s, ...)
    and writes it once the API server takes it."""
    armed = 1000
    armed_now = _faults(
        env,
        failNext={"count": armed, "code": 422, "pathPrefix": "/apis/mnp.dev/v1alpha1/namespaces/default/"},
    )
    assert armed_now["failNext"][0]["count"] == armed, armed_now
    try:
        env.apply(ingress("refused", "srv", {"from": from_pods("a")}))
        time.sleep(6)
        left = json.loads(env.kubectl("get", "--raw", "/mnp-admin/faults"))["failNext"]
        attempts = armed - (left[0]["count"] if left else 0)
        # 0.5 + 1 + 2 + 4 s of backoff fit 4-5 attempts in 6 s (a replica still stopping from an
        # earlier test may add its own); a pass every 50 ms makes ~100.
        assert 1 <= attempts <= 12, f"{attempts} attempts in 6 s"
        assert "default/srv" not in env.rulesets()
        assert "ruleset write failed" in env.procs.log("controller")
    finally:
        _faults(env, reset=True)
    env.until(
        "the refused ruleset to be written once writes are accepted",
        lambda: "default/srv" in env.rulesets(),
        timeout=40,
    )
    env.wait()
    env.flows({Flow("a", "srv"): True, Flow("b", "srv"): False})
