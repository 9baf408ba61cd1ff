"""Copying JSON values: what the server stores and serves is JSON-shaped, and copies are frequent."""

from __future__ import annotations

import copy
import marshal
from typing import TypeVar

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
        return _walk_copy(value)


def _walk_copy(value: V) -> V:
    kind = type(value)
    if kind is dict:
        return {k: _walk_copy(v) for k, v in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [_walk_copy(v) for v in value]  # type: ignore[attr-defined,return-value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


__all__ = ["json_copy"]
