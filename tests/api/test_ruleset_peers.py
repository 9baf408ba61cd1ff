"""Peers of a ruleset parsed once and shared: sharing must never let a bad entry through or lose a path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mnp.api.errors import InvalidRuleset
from mnp.api.ruleset import spec_from_raw


def _raw(peers: list[Any]) -> dict[str, Any]:
    return {
        "podUID": "0b4e6c1a-4d1e-4f7e-9a55-1b2c3d4e5f60",
        "node": "node-1",
        "policies": ["default/all"],
        "interfaces": [{"name": "net1", "network": "default/lan", "ips": ["192.0.2.1"]}],
        "ingress": {
            "isolated": ["net1"],
            "rules": [{"policy": "default/all", "rule": 0, "interface": "net1", "peers": peers}],
        },
    }


GOOD = [{"cidr": "192.0.2.10/32", "pod": "default/a"}, {"cidr": "192.0.2.11/32", "pod": "default/b"}]


def test_the_same_peers_parse_to_equal_and_shared_values() -> None:
    first = spec_from_raw(_raw(copy.deepcopy(GOOD)))
    second = spec_from_raw(_raw(copy.deepcopy(GOOD)))
    assert first == second
    assert first.ingress is not None and second.ingress is not None
    a, b = first.ingress.rules[0].peers, second.ingress.rules[0].peers
    assert a is not None and b is not None
    assert all(x is y for x, y in zip(a, b, strict=True))
    assert [str(p.cidr) for p in a] == ["192.0.2.10/32", "192.0.2.11/32"]
    assert [p.pod for p in a] == ["default/a", "default/b"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"cidr": "192.0.2.10/24", "pod": "default/a"}, "spec.ingress.rules[0].peers[2].cidr"),
        ({"cidr": "192.0.2.10/32", "pod": "not a ref"}, "spec.ingress.rules[0].peers[2].pod"),
        ({"cidr": "192.0.2.10/32", "pod": 7}, "spec.ingress.rules[0].peers[2].pod"),
        ({"cidr": 3232235530, "pod": "default/a"}, "spec.ingress.rules[0].peers[2].cidr"),
        ({"cidr": "192.0.2.0/24", "except": ["198.51.100.0/25"]}, "spec.ingress.rules[0].peers[2].except"),
        (["192.0.2.10/32"], "spec.ingress.rules[0].peers[2]"),
    ],
)
def test_a_bad_peer_is_refused_with_its_path_even_after_good_ones_were_shared(bad: Any, field: str) -> None:
    spec_from_raw(_raw(copy.deepcopy(GOOD)))  # the good peers are now known
    with pytest.raises(InvalidRuleset) as e:
        spec_from_raw(_raw([*copy.deepcopy(GOOD), bad]))
    assert e.value.field == field


def test_a_peer_with_an_except_is_parsed_in_full() -> None:
    spec = spec_from_raw(_raw([{"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"], "pod": None}]))
    assert spec.ingress is not None
    (peer,) = spec.ingress.rules[0].peers or ()
    assert [str(e) for e in peer.excepts] == ["192.0.2.128/25"]
