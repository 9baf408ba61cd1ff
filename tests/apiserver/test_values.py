"""json_copy: a deep copy of JSON values, independent of the original; decoding with interned keys."""

from __future__ import annotations

import copy
import datetime
import enum
import json
import sys

import yaml

from mnp.local.apiserver.values import intern_keys, json_copy, loads_interned


def test_json_copy_equals_the_original_and_shares_no_container_with_it() -> None:
    original = {"a": [1, 2.5, {"b": None, "c": True}], "d": {"e": ["x", {"f": "g"}]}, "h": ""}
    copied = json_copy(original)
    assert copied == original == copy.deepcopy(original)
    copied["a"][2]["c"] = False
    copied["d"]["e"][1]["f"] = "changed"
    copied["a"].append(3)
    assert original == {"a": [1, 2.5, {"b": None, "c": True}], "d": {"e": ["x", {"f": "g"}]}, "h": ""}


def test_json_copy_deep_copies_what_is_not_json_too() -> None:
    inner = {"k": [1]}
    original = {"t": (inner,), "s": {1, 2}}
    copied = json_copy(original)
    assert copied == original
    copied["t"][0]["k"].append(2)
    assert inner == {"k": [1]}


def test_json_copy_of_a_value_reachable_twice_gives_two_independent_copies() -> None:
    shared = {"cidr": "192.0.2.7/32", "except": ["192.0.2.8/32"]}
    original = {"peers": [shared, shared], "again": shared}
    copied = json_copy(original)
    assert copied == original
    assert copied["peers"][0] is not copied["peers"][1] and copied["peers"][0] is not copied["again"]
    copied["peers"][0]["except"].append("192.0.2.9/32")
    assert (
        copied["peers"][1]
        == copied["again"]
        == shared
        == {"cidr": "192.0.2.7/32", "except": ["192.0.2.8/32"]}
    )


def test_json_copy_keeps_bools_ints_and_floats_apart() -> None:
    original = [True, 1, 1.0, False, 0, 0.0, -0.0, 2**80, 1e308, None, "\ud800"]
    copied = json_copy(original)
    assert [type(v) for v in copied] == [type(v) for v in original]
    assert repr(copied) == repr(original)


def test_json_copy_keeps_subclasses_and_values_marshal_refuses() -> None:
    class Port(enum.IntEnum):
        HTTP = 80

    class Name(str):
        pass

    when = datetime.date(2001, 12, 14)  # what yaml.safe_load makes of a bare date
    original = {"port": Port.HTTP, "name": Name("web"), "since": when, "nested": [{"port": Port.HTTP}]}
    copied = json_copy(original)
    assert copied == original
    assert type(copied["port"]) is Port and type(copied["name"]) is Name and copied["since"] == when
    assert copied["nested"][0] is not original["nested"][0]


def all_keys(value: object) -> list[str]:
    """Every dict key in a decoded value, at every depth."""
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in (k, *all_keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in all_keys(v)]
    return []


def test_decoded_keys_are_interned_and_values_equal_plain_decoding() -> None:
    text = '{"metadata": {"name": "a", "labels": {"mnp.dev/node": "n1"}}, "spec": {"peers": [{"cidr": "x"}], "z": 1}}'
    decoded = loads_interned(text)
    assert decoded == json.loads(text) and list(decoded["spec"]) == ["peers", "z"]
    assert all(k is sys.intern(k) for k in all_keys(decoded))


def test_intern_keys_unshares_yaml_anchors_and_keeps_other_keys() -> None:
    decoded = yaml.safe_load("a: &x {k: [1]}\nb: *x\n2: two\n")
    assert decoded["a"] is decoded["b"]
    copied = intern_keys(decoded)
    assert copied == decoded and copied["a"] is not copied["b"] and copied[2] == "two"
    assert all(k is sys.intern(k) for k in all_keys(copied) if isinstance(k, str))
