"""json_copy: a deep copy of JSON values, independent of the original."""

from __future__ import annotations

import copy
import datetime
import enum

from mnp.local.apiserver.values import json_copy


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
