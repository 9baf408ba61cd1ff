"""The bad-input sweep end to end: a batch of malformed MultiNetworkPolicies, network-status
annotations and NADs thrown at once at a local cluster running `mnp controller` and `mnp agent`.

What the API server's schema (crds/) refuses must be a 422 naming the field; what it lets through
must leave the controller and the agents running without a traceback, each bad policy with
Accepted=False naming the field and exactly one InvalidPolicy Event after several resyncs, the pods
a bad policy selects isolated (never opened), a good policy applied in the same batch enforced, and
pods with a broken network-status still policed (and no peer), the problem logged naming pod and
annotation. Flows are real TCP between pod netns (tests/kernel/mnp_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import local_cluster
from mnp_e2e import E2E, Flow, PodSpec, nad, policy

from mnp.kube.client import Client
from mnp.kube.errors import KubeApiError
from mnp.kube.resources import MNPS, NADS

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
RESYNC_S = 2.0  # the controller's --resync-period: the Event check waits several of them
NODE = "node-1"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
POLICY_FOR = "k8s.v1.cni.cncf.io/policy-for"

PODS = tuple(
    PodSpec(name, NODE, {"lan": [f"192.0.2.{10 + i}"]})
    for i, name in enumerate(("srv", "a", "b", "tgt", "sick", "twice", "deep"))
)
# network-status values the pods sick, twice and deep get after they run (Multus wrote a good one).
BROKEN_STATUS = {
    "sick": "{oops",
    "twice": json.dumps(
        [
            {"name": "default/lan", "interface": "net1", "ips": ["192.0.2.15"]},
            {"name": "default/lan", "interface": "net1", "ips": ["192.0.2.99"]},
        ]
    ),
    "deep": "[" * 5000 + "]" * 5000,
}


def app(*names: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": list(names)}]}


TGT = app("tgt")
FROM_A = [{"from": [{"podSelector": app("a")}], "ports": [{"port": 8080}]}]

# Good policies in the same batch. "sick" shares its name with a pod whose network-status is broken:
# the pod's problem must not show on it.
GOOD = [
    policy("good", {"podSelector": app("srv"), "ingress": [{"from": [{"podSelector": app("a", "sick", "deep")}]}]}),
    policy("sick", {"podSelector": app("sick", "twice", "deep"), "ingress": [{"from": [{"podSelector": app("a")}]}]}),
]
# Absurd but valid sizes: 10,000 ipBlocks (none covers a pod), a 100,000-character label value.
# Created, not applied: `kubectl apply` copies the object into an annotation, which may not pass 256 KiB.
HUGE = [
    policy("big", {"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}} for i in range(10_000)]}]}),
    policy("huge-label", {"podSelector": {"matchLabels": {"app": "v" * 100_000}}, "ingress": []}),
]

# Bad policies the schema lets through: name -> (spec, policy-for, the field the status must name).
# Those for tgt would allow a -> tgt if the bad part were read leniently.
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "bad-operator": ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["tgt"]}]}}, "lan", "spec.podSelector.matchExpressions[0].operator"),
    "bad-in-no-values": ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}, "lan", "spec.podSelector.matchExpressions[0].values"),
    "bad-exists-values": ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}, "lan", "spec.podSelector.matchExpressions[0].values"),
    "bad-empty-from": ({"podSelector": TGT, "ingress": [{"from": [{}]}]}, "lan", "spec.ingress[0].from[0]"),
    "bad-peer-operator": ({"podSelector": TGT, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "in", "values": ["a"]}]}}]}]}, "lan", "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator"),
    "bad-port-negative": ({"podSelector": TGT, "ingress": [{"ports": [{"port": -8080}]}]}, "lan", "spec.ingress[0].ports[0].port"),
    "bad-port-zero": ({"podSelector": TGT, "ingress": [{"ports": [{"port": 0}]}]}, "lan", "spec.ingress[0].ports[0].port"),
    "bad-port-65536": ({"podSelector": TGT, "ingress": [{"ports": [{"port": 65536}]}]}, "lan", "spec.ingress[0].ports[0].port"),
    "bad-endport-below": ({"podSelector": TGT, "ingress": [{"ports": [{"port": 8081, "endPort": 8080}]}]}, "lan", "spec.ingress[0].ports[0].endPort"),
    "bad-endport-named": ({"podSelector": TGT, "ingress": [{"ports": [{"port": "tcp8080", "endPort": 8080}]}]}, "lan", "spec.ingress[0].ports[0].endPort"),
    "bad-protocol-lower": ({"podSelector": TGT, "ingress": [{"ports": [{"protocol": "tcp", "port": 8080}]}]}, "lan", "spec.ingress[0].ports[0].protocol"),
    "bad-protocol-icmp": ({"podSelector": TGT, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "lan", "spec.ingress[0].ports[0].protocol"),
    "bad-cidr": ({"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/33"}}]}]}, "lan", "spec.ingress[0].from[0].ipBlock.cidr"),
    "bad-except": ({"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/33"]}}]}]}, "lan", "spec.ingress[0].from[0].ipBlock.except[0]"),
    "bad-except-covers": ({"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.0.0/16"]}}]}]}, "lan", "spec.ingress[0].from[0].ipBlock.except[0]"),
    "bad-types": ({"podSelector": TGT, "policyTypes": ["Both"]}, "lan", "spec.policyTypes[0]"),
    "bad-for-empty": ({"podSelector": TGT, "ingress": FROM_A}, "", f"metadata.annotations[{POLICY_FOR}]"),
    "bad-for-abc": ({"podSelector": TGT, "ingress": FROM_A}, "a/b/c", f"metadata.annotations[{POLICY_FOR}][0]"),
    "bad-for-space": ({"podSelector": TGT, "ingress": FROM_A}, "la n", f"metadata.annotations[{POLICY_FOR}][0]"),
    "bad-for-json": ({"podSelector": TGT, "ingress": FROM_A}, '["lan"]', f"metadata.annotations[{POLICY_FOR}][0]"),
    "bad-nad-json": ({"podSelector": TGT, "ingress": FROM_A}, "broken-json", "network default/broken-json: spec.config is not JSON"),
    "bad-nad-type": ({"podSelector": TGT, "ingress": FROM_A}, "no-type", "network default/no-type: spec.config has no type"),
    "bad-nad-bridge": ({"podSelector": TGT, "ingress": FROM_A}, "bridge", "network default/bridge is of CNI type 'bridge'"),
    "bad-nad-missing": ({"podSelector": TGT, "ingress": FROM_A}, "nowhere", "network default/nowhere does not exist"),
}
# Thousands of bad entries: the status message must still fit the condition's 32768 bytes.
MANY = policy("bad-many", {"podSelector": TGT, "ingress": [{"ports": [{"port": 0}]} for _ in range(30_000)]})
# Sent without strict field validation (as most clients do): the API server prunes the unknown key,
# leaving an empty peer.
PRUNED = policy("bad-unknown-key", {"podSelector": TGT, "ingress": [{"from": [{"podSelectr": app("a")}]}]})
BAD_NADS = {
    "broken-json": "{not json",
    "no-type": json.dumps({"cniVersion": "0.4.0", "master": "eth0"}),
    "bridge": json.dumps({"cniVersion": "0.4.0", "type": "bridge"}),
}

# What the schema refuses: name -> (spec, the field the 422 must name).
REFUSED: dict[str, tuple[Any, str]] = {
    "spec-list": ([], "spec"),
    "no-pod-selector": ({}, "spec.podSelector"),
    "pod-selector-string": ({"podSelector": "app=tgt"}, "spec.podSelector"),
    "label-int": ({"podSelector": {"matchLabels": {"app": 1}}}, "spec.podSelector.matchLabels.app"),
    "label-list": ({"podSelector": {"matchLabels": {"app": ["tgt"]}}}, "spec.podSelector.matchLabels.app"),
    "no-operator": ({"podSelector": {"matchExpressions": [{"key": "app"}]}}, "spec.podSelector.matchExpressions[0].operator"),
    "ingress-object": ({"podSelector": TGT, "ingress": {"from": []}}, "spec.ingress"),
    "from-object": ({"podSelector": TGT, "ingress": [{"from": {"podSelector": {}}}]}, "spec.ingress[0].from"),
    "port-list": ({"podSelector": TGT, "ingress": [{"ports": [{"port": [8080]}]}]}, "spec.ingress[0].ports[0].port"),
    "port-float": ({"podSelector": TGT, "ingress": [{"ports": [{"port": 8080.5}]}]}, "spec.ingress[0].ports[0].port"),
    "endport-string": ({"podSelector": TGT, "ingress": [{"ports": [{"port": 8080, "endPort": "8090"}]}]}, "spec.ingress[0].ports[0].endPort"),
    "protocol-int": ({"podSelector": TGT, "ingress": [{"ports": [{"protocol": 6}]}]}, "spec.ingress[0].ports[0].protocol"),
    "no-cidr": ({"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"except": []}}]}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    "except-string": ({"podSelector": TGT, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": "10.1.0.0/16"}}]}]}, "spec.ingress[0].from[0].ipBlock.except"),
    "types-string": ({"podSelector": TGT, "policyTypes": "Ingress"}, "spec.policyTypes"),
}


def bad_policies() -> list[dict[str, Any]]:
    return [policy(name, spec, networks=networks) for name, (spec, networks, _) in BAD.items()]


def broken_nads() -> list[dict[str, Any]]:
    out = []
    for name, config in BAD_NADS.items():
        obj = nad(name)
        obj["spec"]["config"] = config
        out.append(obj)
    return out


async def _create(kubeconfig: str, resource: Any, bodies: list[dict[str, Any]]) -> list[KubeApiError | None]:
    """POST each object as a plain client does (no strict field validation); the error of each."""
    client = await Client.from_kubeconfig(kubeconfig)
    try:
        out: list[KubeApiError | None] = []
        for body in bodies:
            try:
                await client.create(resource, body, "default")
                out.append(None)
            except KubeApiError as e:
                out.append(e)
        return out
    finally:
        await client.close()


def create(e: E2E, resource: Any, *bodies: dict[str, Any]) -> list[KubeApiError | None]:
    return asyncio.run(_create(e.cluster.kubeconfig, resource, list(bodies)))


@pytest.fixture(scope="module")
def env() -> Iterator[E2E]:
    with local_cluster(nodes=1) as cluster:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        e = E2E(cluster, PODS)
        try:
            e.apply(nad("lan"), *(p.manifest() for p in PODS))
            e.procs.start_agent(NODE)
            e.procs.start_controller(resync_period=RESYNC_S)
            cluster.wait_running(*(p.name for p in PODS))
            for name, value in BROKEN_STATUS.items():
                e.kubectl("annotate", "--overwrite", "pod", name, f"{NETWORK_STATUS}={value}")
            yield e
        finally:
            e.procs.stop_all()


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def all_enforced(e: E2E) -> bool:
    policies = e.json("multi-policy", "-n", "default")["items"]
    return len(policies) == len(GOOD) + len(HUGE) + len(BAD) + 2 and all(
        p.get("status", {}).get("observedGeneration") == p["metadata"]["generation"]
        and condition(p, "Enforced")["status"] == "True"
        for p in policies
    )


def invalid_policy_events(e: E2E) -> dict[str, list[dict[str, Any]]]:
    """The InvalidPolicy Events of each policy now in default (matched by uid)."""
    uids = {p["metadata"]["uid"]: p["metadata"]["name"] for p in e.json("multi-policy", "-n", "default")["items"]}
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in uids.values()}
    for ev in e.json("events", "-n", "default")["items"]:
        uid = ev["involvedObject"].get("uid")
        if ev["reason"] == "InvalidPolicy" and uid in uids:
            out[uids[uid]].append(ev)
    return out


def test_what_the_schema_refuses_is_a_422_naming_the_field(env: E2E) -> None:
    bodies = [policy(name, spec) for name, (spec, _) in REFUSED.items()]
    listed = policy("policy-for-list", {"podSelector": TGT})
    listed["metadata"]["annotations"][POLICY_FOR] = ["lan"]
    config_number = nad("config-number")
    config_number["spec"]["config"] = 5
    errors = create(env, MNPS, *bodies, listed)
    errors += create(env, NADS, config_number)
    fields = [f for _, f in REFUSED.values()] + [f"metadata.annotations.{POLICY_FOR}", "spec.config"]
    names = [*REFUSED, "policy-for-list", "config-number"]
    for name, field, error in zip(names, fields, errors, strict=True):
        assert error is not None, f"{name} was accepted"
        assert error.code == 422 and field in str(error), (name, str(error))
    assert not env.json("multi-policy", "-n", "default")["items"], "nothing refused was stored"


def test_a_batch_of_bad_input_is_reported_once_per_policy_and_never_opens_a_pod(env: E2E) -> None:
    started = time.monotonic()
    env.apply(*broken_nads(), *GOOD, *bad_policies())
    assert create(env, MNPS, PRUNED, MANY, *HUGE) == [None] * 4
    assert env.json("multi-policy", "bad-unknown-key")["spec"]["ingress"] == [{"from": [{}]}], "pruned"
    # Not `mnp local wait`: it rightly waits for the broken network-status annotations to be fixed.
    env.until("every policy to be enforced on all the pods it selects", lambda: all_enforced(env), timeout=90)
    expected = {
        **{name: field for name, (_, _, field) in BAD.items()},
        "bad-unknown-key": "spec.ingress[0].from[0]",
        "bad-many": "and 29980 more problems",
    }

    # Status: every bad policy Accepted=False naming its field; every good one Accepted=True.
    policies = {p["metadata"]["name"]: p for p in env.json("multi-policy", "-n", "default")["items"]}
    wrong = {}
    for name, field in expected.items():
        accepted = condition(policies[name], "Accepted")
        if accepted["status"] != "False" or accepted["reason"] != "Invalid" or field not in accepted["message"]:
            wrong[name] = accepted
    for good in GOOD + HUGE:
        accepted = condition(policies[good["metadata"]["name"]], "Accepted")
        if accepted["status"] != "True":
            wrong[good["metadata"]["name"]] = accepted
    assert not wrong, json.dumps(wrong, indent=1)
    assert policies["big"]["status"]["enforcedPods"] == 1
    assert policies["huge-label"]["status"]["selectedPods"] == 0

    # Enforcement: the good policy works, tgt (selected by bad policies) is shut both ways, the pods
    # with a broken network-status stay policed by interface and are no peers.
    env.flows(
        {
            Flow("a", "srv"): True,
            Flow("b", "srv"): False,
            Flow("a", "tgt"): False,
            Flow("b", "tgt"): False,
            Flow("srv", "tgt", 9090): False,
            Flow("tgt", "a"): False,  # bad-types isolates egress too
            Flow("a", "sick"): True,
            Flow("b", "sick"): False,
            Flow("a", "twice"): True,
            Flow("b", "twice"): False,
            Flow("a", "deep"): True,
            Flow("b", "deep"): False,
            Flow("sick", "srv"): False,  # the good policy names it, but its addresses are unknown
            Flow("deep", "srv"): False,
        }
    )
    rulesets = env.kubectl("get", "pnr", "-A")
    for pod in ("srv", "tgt", "sick", "twice", "deep"):
        assert f" {pod} " in rulesets, rulesets
    for pod in ("a", "b"):
        assert f" {pod} " not in rulesets, rulesets

    # Several resyncs later: exactly one InvalidPolicy Event per bad policy, naming the field; none
    # for the good ones.
    time.sleep(max(0.0, started + 3 * RESYNC_S - time.monotonic()) + RESYNC_S)
    events = invalid_policy_events(env)
    counts = {name: [ev.get("count", 1) for ev in evs] for name, evs in events.items()}
    assert counts == {**{name: [1] for name in expected}, **{g["metadata"]["name"]: [] for g in GOOD + HUGE}}, counts
    for name, field in {**expected, "bad-many": "spec.ingress[0].ports[0].port"}.items():
        assert field in events[name][0]["message"], events[name][0]  # Event messages are cut shorter

    # Nobody crashed, restarted or logged a traceback; the broken annotations were logged by pod.
    for name in env.procs.procs:
        assert env.procs.running(name), f"{name} exited:\n{env.procs.log(name)[-3000:]}"
        assert "Traceback" not in env.procs.log(name), env.procs.log(name)[-5000:]
    assert len(list(env.cluster.layout.root.glob("controller.*.log"))) == 1
    log = env.procs.log("controller")
    for pod, detail in (("sick", "not JSON"), ("twice", "appears twice"), ("deep", "nested too deeply")):
        lines = [line for line in log.splitlines() if "pod problem" in line and f"default/{pod}" in line]
        assert lines and NETWORK_STATUS in lines[0] and detail in lines[0], (pod, lines)
