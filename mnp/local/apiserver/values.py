"""Copying JSON values: what the server stores and serves is JSON-shaped, and copies are frequent."""

from __future__ import annotations

import copy
from typing import TypeVar

V = TypeVar("V")


def json_copy(value: V) -> V:
    """A deep copy of a JSON value (dicts, lists, str, numbers, bools, None), several times faster
    than copy.deepcopy; anything else is deep-copied the general way."""
    kind = type(value)
    if kind is dict:
        return {k: json_copy(v) for k, v in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [json_copy(v) for v in value]  # type: ignore[attr-defined,return-value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


__all__ = ["json_copy"]
