"""Copying and decoding JSON values: what the server stores and serves is JSON-shaped, copies are
frequent, and the field names of stored objects are interned (shared by every object, ~30% less memory).
"""

from __future__ import annotations

import copy
import json
import marshal
import sys
from typing import Any, TypeVar

V = TypeVar("V")

# marshal format 2 is the newest that writes every occurrence of an object out in full; from format 3
# on, an object reachable twice (refcount > 1) is written once and read back as one shared object, so
# a copy could alias two branches of the original.
_MARSHAL_VERSION = 2


def json_copy(value: V) -> V:
    """A deep copy of a JSON value (dicts, lists, str, numbers, bools, None) that shares no container
    with the original or within itself; anything else is deep-copied the general way.

    A marshal round trip (in C, several times faster than a Python walk) keeps exact types (bool, int
    and float stay apart) and interned strings interned; marshal refuses subclasses and objects it
    does not know, and those values are copied by a walk instead.
    """
    try:
        return marshal.loads(marshal.dumps(value, _MARSHAL_VERSION))  # type: ignore[arg-type,no-any-return]
    except ValueError:
        return json_copy_sharing_strings(value)


def json_copy_sharing_strings(value: V) -> V:
    """A deep copy of a JSON value whose strings (dict keys too) are the original's own objects: for a
    small value that is stored, so its interned field names stay shared; slower than json_copy."""
    kind = type(value)
    if kind is dict:
        return {k: json_copy_sharing_strings(v) for k, v in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [json_copy_sharing_strings(v) for v in value]  # type: ignore[attr-defined,return-value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def _interned_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {sys.intern(k): v for k, v in pairs}


def loads_interned(text: str | bytes) -> Any:
    """json.loads with every object key interned (still parsed in C: a hook call per object)."""
    return json.loads(text, object_pairs_hook=_interned_pairs)


def intern_keys(value: Any) -> Any:
    """A copy of a decoded value (YAML, protobuf) with interned keys and no container shared twice."""
    if isinstance(value, dict):
        return {sys.intern(k) if type(k) is str else k: intern_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [intern_keys(v) for v in value]
    return value


__all__ = ["intern_keys", "json_copy", "json_copy_sharing_strings", "loads_interned"]
