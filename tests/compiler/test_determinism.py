"""Equal inputs give byte-equal output whatever their order; big rulesets are compacted to fit."""

from __future__ import annotations

import json
import random
from typing import Any

from mnp.api.refs import ObjRef
from mnp.api.ruleset import PodRef, ruleset_object, spec_to_raw
from mnp.compiler.compact import ruleset_size
from mnp.compiler.compile import CompileOptions, compile_rulesets
from tests.builders import compile_objs, nad, namespace, pod, policy, snapshot

A = "default/net-a"


def scenario(n_pods: int = 40) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [nad("net-a"), nad("net-b"), namespace("default", team="x"), namespace("other", team="y")]
    for i in range(n_pods):
        ns = "default" if i % 3 else "other"
        nets = {A: ("net1", [f"192.0.2.{i + 1}", f"2001:db8:a::{i + 1:x}"])}
        if i % 4 == 0:
            nets["default/net-b"] = ("net2", [f"198.51.100.{i + 1}"])
        objs.append(pod(f"pod-{i}", ns, {"app": f"a{i % 5}", "tier": "web" if i % 2 else "db"}, nets, ports=[("http", 8000 + i % 3, "TCP")]))
    objs += [
        policy("web", {"podSelector": {"matchLabels": {"tier": "web"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "db"}}}, {"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": "http"}, {"port": 22}]}]}, networks="net-a,net-b"),
        policy("egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "a1"}}}], "ports": [{"port": "http"}, {"protocol": "UDP", "port": 5000, "endPort": 5010}]}, {"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}]}),
        policy("other-deny", {"podSelector": {}, "ingress": []}, ns="other"),
    ]
    return objs


def render_all(objs: list[dict[str, Any]]) -> str:
    result = compile_objs(objs)
    items = [ruleset_object(PodRef(r.namespace, r.name, s.pod_uid), s) for r, s in result.rulesets.items()]
    return json.dumps({"items": items, "diagnostics": [str(d) for d in result.diagnostics]}, indent=1)


def test_compiling_twice_gives_byte_equal_output() -> None:
    assert render_all(scenario()) == render_all(scenario())


def test_output_does_not_depend_on_input_order() -> None:
    objs = scenario()
    expected = render_all(objs)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = objs[:]
        rng.shuffle(shuffled)
        assert render_all(shuffled) == expected


def test_a_ruleset_of_ten_thousand_peers_is_compacted_under_the_limit() -> None:
    objs: list[dict[str, Any]] = [nad("net-a"), namespace("default")]
    objs.append(pod("server", labels={"app": "server"}, nets={A: ("net1", ["192.0.2.1"])}))
    for i in range(10_000):
        hi, lo = divmod(i, 250)
        objs.append(pod(f"c{i}", labels={"app": "client"}, nets={A: ("net1", [f"10.{hi // 250}.{hi % 250}.{lo + 1}", f"fd00::{i + 1:x}"])}))
    objs.append(policy("p", {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}))
    limit = 300_000
    result = compile_rulesets(snapshot(objs), CompileOptions(max_ruleset_bytes=limit))
    spec = result.rulesets[ObjRef("default", "server", "Pod")]
    assert spec.compacted
    assert ruleset_size(spec) <= limit
    assert spec.ingress is not None
    peers = spec.ingress.rules[0].peers or ()
    assert all(p.pod is None for p in peers)
    # Collapsing keeps exactly the same addresses: 10,000 v4 and 10,000 v6.
    assert sum(p.cidr.num_addresses for p in peers if p.cidr.version == 4) == 10_000
    assert sum(p.cidr.num_addresses for p in peers if p.cidr.version == 6) == 10_000
    assert any("compacted" in d.message for d in result.diagnostics)


def test_a_small_ruleset_keeps_its_provenance() -> None:
    result = compile_objs(scenario(10))
    for spec in result.rulesets.values():
        assert not spec.compacted
        raw = spec_to_raw(spec)
        assert raw["compacted"] is False
