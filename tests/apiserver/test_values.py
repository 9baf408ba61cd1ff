"""json_copy: a deep copy of JSON values, independent of the original."""

from __future__ import annotations

import copy

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
