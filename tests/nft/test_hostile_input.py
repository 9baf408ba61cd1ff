"""Untrusted rulesets never reach nft text: each bad value is refused naming its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mnp.api.errors import InvalidInput, InvalidRuleset
from mnp.api.ruleset import Interface, spec_from_raw
from mnp.nft import names
from mnp.nft.render import render_ruleset
from tests.nft.cases import spec

GOOD: dict[str, Any] = {
    "podUID": "0c1e7a52-pod",
    "node": "node-1",
    "policies": ["default/web"],
    "interfaces": [{"name": "net1", "network": "default/net-a", "ips": ["192.0.2.10"]}],
    "ingress": {
        "isolated": ["net1"],
        "rules": [
            {
                "policy": "default/web",
                "rule": 0,
                "interface": "net1",
                "peers": [{"cidr": "10.0.0.0/8", "except": ["10.0.1.0/24"]}],
                "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}],
            }
        ],
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    node: Any = raw
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return raw


HOSTILE = [
    ("interfaces.0.name", 'net1"; drop', "spec.interfaces[0].name"),
    ("interfaces.0.name", "}", "spec.interfaces[0].name"),
    ("ingress.isolated.0", 'net1" : accept }', "spec.ingress.isolated[0]"),
    ("ingress.rules.0.interface", "net1 } chain x {", "spec.ingress.rules[0].interface"),
    ("ingress.rules.0.peers.0.cidr", "10.0.0.0/8 }", "spec.ingress.rules[0].peers[0].cidr"),
    ("ingress.rules.0.peers.0.cidr", "10.0.0.1/8", "spec.ingress.rules[0].peers[0].cidr"),
    (
        "ingress.rules.0.peers.0.except",
        ["10.0.1.0/24; flush ruleset"],
        "spec.ingress.rules[0].peers[0].except[0]",
    ),
    ("ingress.rules.0.peers.0.except", ["192.168.0.0/24"], "spec.ingress.rules[0].peers[0].except"),
    ("ingress.rules.0.ports", [{"protocol": "TCP", "port": 70000}], "spec.ingress.rules[0].ports[0].port"),
    ("ingress.rules.0.ports.0.port", "80 accept", "spec.ingress.rules[0].ports[0].port"),
    ("ingress.rules.0.ports.0.endPort", 10**12, "spec.ingress.rules[0].ports[0].endPort"),
    ("ingress.rules.0.ports.0.endPort", 79, "spec.ingress.rules[0].ports[0].endPort"),
    ("ingress.rules.0.ports", [{"protocol": "tcp"}], "spec.ingress.rules[0].ports[0].protocol"),
    ("ingress.rules.0.ports", [{"protocol": "ICMP"}], "spec.ingress.rules[0].ports[0].protocol"),
    ("ingress.rules.0.policy", "default/web; drop", "spec.ingress.rules[0].policy"),
    ("policies", ['a/b" }'], "spec.policies[0]"),
    ("node", "node 1", "spec.node"),
]


@pytest.mark.parametrize(("where", "value", "field"), HOSTILE, ids=[f"{w}={v!r}" for w, v, _ in HOSTILE])
def test_hostile_value_is_refused_naming_its_field(where: str, value: Any, field: str) -> None:
    with pytest.raises(InvalidRuleset) as e:
        spec_from_raw(_with(where, value))
    assert e.value.field == field


NEWLINES = [
    ("interfaces.0.name", "net1\n", "spec.interfaces[0].name"),
    ("ingress.rules.0.policy", "default/web\n", "spec.ingress.rules[0].policy"),
    ("podUID", "0c1e7a52\n", "spec.podUID"),
]


@pytest.mark.parametrize(("where", "value", "field"), NEWLINES, ids=[w for w, _, _ in NEWLINES])
def test_newline_in_a_name_is_refused_naming_its_field(where: str, value: Any, field: str) -> None:
    raw = _with(where, value)
    if where == "interfaces.0.name":
        raw["ingress"]["isolated"] = [value]
        raw["ingress"]["rules"][0]["interface"] = value
    with pytest.raises(InvalidRuleset) as e:
        spec_from_raw(raw)
    assert e.value.field == field


def test_renderer_refuses_an_interface_name_with_a_newline_even_if_validation_let_it_through() -> None:
    s = spec(ingress={"isolated": ["net1"], "rules": []})
    bad = type(s)(
        pod_uid=s.pod_uid,
        node=s.node,
        interfaces=(Interface("net1\n", "default/net-a"),),
        ingress=type(s.ingress)(isolated=("net1\n",)),  # type: ignore[misc]
    )
    with pytest.raises(InvalidInput):
        render_ruleset(bad)


def test_newlines_and_quotes_in_provenance_never_reach_the_text() -> None:
    s = spec(ingress={"isolated": ["net1"], "rules": []})
    odd = type(s)(
        pod_uid='x"\n}; flush ruleset',
        node="n\nx",
        policies=('a/b"\ntable ip x {}',),
        interfaces=s.interfaces,
        ingress=s.ingress,
    )
    text = render_ruleset(odd)
    header = text.splitlines()[0]
    assert header.startswith("# mnp: pod uid x_ __ flush ruleset on n x")
    assert text.count("\n") == render_ruleset(s).count("\n")
    assert '"' not in header and ";" not in header


@pytest.mark.parametrize("name", ['net1"', "net 1", "net1}", "", "a" * 16, "net1\n", "..", "net;1"])
def test_interface_literal_accepts_only_interface_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        names.ifname_literal(name)


def test_a_policy_name_that_bypassed_validation_cannot_leave_its_chain_comment() -> None:
    from mnp.api.ruleset import DirectionRules, Rule

    s = spec(ingress={"isolated": ["net1"], "rules": []})
    evil = Rule(policy='a/b" }\n table ip x { chain y { drop', rule=0, interface="net1")
    text = render_ruleset(
        type(s)(s.pod_uid, s.node, interfaces=s.interfaces, ingress=DirectionRules(("net1",), (evil,)))
    )
    comment = next(line for line in text.splitlines() if "comment" in line)
    assert comment == '\t\tcomment "a/b_ _  table ip x _ chain y _ drop:0"'
    assert "table ip x" not in text.replace(comment, "")
