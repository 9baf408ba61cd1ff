"""Incremental recompute equals a full compile after every change, and touches little."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mnp.api.cluster import parse_namespace, parse_network, parse_pod
from mnp.api.policy import parse_policy
from mnp.compiler.affected import Change, Parsed, affected, affected_policies
from mnp.compiler.compile import CompileOptions, Snapshot
from mnp.compiler.incremental import Compiled
from mnp.controller.controller import Parsed as ControllerParsed
from mnp.kube.watch import EventType, WatchEvent
from tests.builders import nad, namespace, pod, policy, snapshot

OPTIONS = CompileOptions()
NAMESPACES = ("default", "team-a", "team-b")
LABELS = ({"app": "web"}, {"app": "db"}, {"app": "web", "tier": "front"}, {"app": "cache"}, {})


def _parse(obj: dict[str, Any]) -> Parsed:
    kind = obj["kind"]
    if kind == "Pod":
        return parse_pod(obj)[0]
    if kind == "Namespace":
        return parse_namespace(obj)
    if kind == "MultiNetworkPolicy":
        return parse_policy(obj)[0]
    return parse_network(obj)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _random_pod(rng: random.Random, i: int) -> dict[str, Any]:
    ns = rng.choice(NAMESPACES)
    nets: dict[str, tuple[str, list[str]]] = {f"{ns}/net-a": ("net1", [f"192.0.2.{i}", f"2001:db8::{i:x}"])}
    if rng.random() < 0.3:
        nets[f"{ns}/net-b"] = ("net2", [f"198.51.100.{i}"])
    ports = [("http", 8000 + rng.randrange(3), "TCP")] if rng.random() < 0.7 else None
    return pod(f"p{i}", ns, dict(rng.choice(LABELS)), nets, ports=ports)


def _random_peer(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(4)
    if choice == 0:
        return {"podSelector": {"matchLabels": dict(rng.choice(LABELS))}}
    if choice == 1:
        return {"namespaceSelector": {"matchLabels": {"team": rng.choice(["a", "b"])}}}
    if choice == 2:
        return {
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            "podSelector": {"matchLabels": dict(rng.choice(LABELS))},
        }
    return {"ipBlock": {"cidr": "192.0.2.0/24", "except": [f"192.0.2.{rng.randrange(8) * 16}/28"]}}


def _random_policy(rng: random.Random, i: int) -> dict[str, Any]:
    ns = rng.choice(NAMESPACES)
    rule: dict[str, Any] = {"ports": [{"port": rng.choice(["http", 8001, 53])}]} if rng.random() < 0.6 else {}
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": dict(rng.choice(LABELS))},
        "policyTypes": rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
        "ingress": [{"from": [_random_peer(rng) for _ in range(rng.randrange(1, 3))], **rule}],
        "egress": [{"to": [_random_peer(rng)], **rule}] if rng.random() < 0.8 else [],
    }
    networks = rng.choice(["net-a", "net-b", "net-a,net-b", f"{ns}/net-a"])
    if rng.random() < 0.1:
        spec["ingress"][0]["from"].append({"ipBlock": {"cidr": "10.0.0.0/33"}})  # invalid: a diagnostic
    return policy(f"pol{i}", spec, ns, networks)


def _world(rng: random.Random) -> dict[tuple[str, str, str], dict[str, Any]]:
    objs = [namespace("default"), namespace("team-a", team="a"), namespace("team-b", team="b")]
    objs += [nad("net-a", ns) for ns in NAMESPACES] + [nad("net-b", ns) for ns in NAMESPACES]
    objs += [_random_pod(rng, i) for i in range(1, 25)]
    objs += [_random_policy(rng, i) for i in range(8)]
    return {_key(o): o for o in objs}


def _mutate(
    rng: random.Random, world: dict[tuple[str, str, str], dict[str, Any]], step: int
) -> list[dict[str, Any] | None]:
    """Change one thing; returns [old, new] (either may be None)."""
    kind = rng.choice(
        ["label", "label", "pod-add", "pod-delete", "ns-label", "policy-edit", "policy-delete", "policy-add"]
    )
    pods = [k for k in world if k[0] == "Pod"]
    pols = [k for k in world if k[0] == "MultiNetworkPolicy"]
    if kind == "label" and pods:
        k = rng.choice(pods)
        old = world[k]
        new = {**old, "metadata": {**old["metadata"], "labels": dict(rng.choice(LABELS))}}
    elif kind == "pod-add":
        new = _random_pod(rng, 100 + step)
        old = world.get(_key(new))
    elif kind == "pod-delete" and pods:
        old, new = world[rng.choice(pods)], None
    elif kind == "ns-label":
        k = ("Namespace", "", rng.choice(NAMESPACES[1:]))
        old = world[k]
        new = namespace(old["metadata"]["name"], **rng.choice([{}, {"team": "a"}, {"team": "b"}]))
    elif kind == "policy-edit" and pols:
        k = rng.choice(pols)
        old = world[k]
        fresh = _random_policy(rng, 0)
        new = {
            **fresh,
            "metadata": {
                **old["metadata"],
                "generation": old["metadata"]["generation"] + 1,
                "annotations": fresh["metadata"]["annotations"],
            },
        }
    elif kind == "policy-delete" and pols:
        old, new = world[rng.choice(pols)], None
    else:
        new = _random_policy(rng, 50 + step)
        old = world.get(_key(new))
    if new is None:
        assert old is not None
        del world[_key(old)]
    else:
        world[_key(new)] = new
    return [old, new]


def _labels(world: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {k[2]: o["metadata"].get("labels") or {} for k, o in world.items() if k[0] == "Namespace"}


def _event(parsed: ControllerParsed, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    obj = new if new is not None else old
    assert obj is not None
    kinds = {"MultiNetworkPolicy": "policy", "Pod": "pod", "Namespace": "namespace"}
    kind = EventType.DELETED if new is None else EventType.ADDED if old is None else EventType.MODIFIED
    parsed.apply(kinds.get(obj["kind"], "network"), WatchEvent(kind, obj, old))


@pytest.mark.parametrize("seed", range(12))
def test_incremental_recompute_equals_a_full_compile_after_every_change(seed: int) -> None:
    """As the controller does it: its Parsed view (with the pod index it keeps up to date) in,
    affected policies and those whose peers can have changed, then the recompute."""
    rng = random.Random(seed)
    world = _world(rng)
    parsed = ControllerParsed()
    for obj in world.values():
        _event(parsed, None, obj)
    state = Compiled.full(parsed.snapshot(), OPTIONS)
    for step in range(30):
        before: Snapshot = snapshot(list(world.values()))
        old, new = _mutate(rng, world, step)
        _event(parsed, old, new)
        after = parsed.snapshot()
        assert after.pods == tuple(sorted(snapshot(list(world.values())).pods, key=lambda p: p.ref))
        change = Change(_parse(old) if old else None, _parse(new) if new else None)
        policies = [*before.policies, *after.policies]
        touched, peers_changed = affected(policies, [change], _labels(world))
        assert peers_changed <= touched
        changed = [o.ref if hasattr(o, "ref") else None for o in (change.old, change.new) if o is not None]
        state.update(after, OPTIONS, touched, [r for r in changed if r is not None], peers_changed)
        full = Compiled.full(snapshot(list(world.values())), OPTIONS).result()
        got = state.result()
        assert got.rulesets == full.rulesets, f"seed {seed} step {step}: rulesets differ"
        assert got.selected == full.selected, f"seed {seed} step {step}: selections differ"
        assert got.diagnostics == full.diagnostics, f"seed {seed} step {step}: diagnostics differ"


def test_a_label_change_on_one_pod_recomputes_only_the_pods_its_policies_select() -> None:
    rng = random.Random(7)
    world = _world(rng)
    objs = list(world.values())
    # One more policy far away: selects team-b cache pods only, with no peers that could match a web pod.
    far = policy(
        "far",
        {
            "podSelector": {"matchLabels": {"app": "cache"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
        },
        "team-b",
    )
    objs.append(far)
    state = Compiled.full(snapshot(objs), OPTIONS)
    target = next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["namespace"] == "default")
    relabelled = {**target, "metadata": {**target["metadata"], "labels": {"app": "db"}}}
    objs = [relabelled if o is target else o for o in objs]
    change = Change(_parse(target), _parse(relabelled))
    after = snapshot(objs)
    affected = affected_policies(
        after.policies, [change], {"default": {}, "team-a": {"team": "a"}, "team-b": {"team": "b"}}
    )
    assert "team-b/far" not in affected
    touched = state.update(after, OPTIONS, affected, [change.new.ref])  # type: ignore[union-attr]
    assert touched < set(state.rulesets) | touched
    assert state.result().rulesets == Compiled.full(after, OPTIONS).result().rulesets
