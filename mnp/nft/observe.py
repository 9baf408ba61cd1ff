"""Reads a table back from `nft list` output (pure: text in, values out).

The kernel is the source of truth for what a pod's netns holds: someone may have flushed, edited or
half-deleted our table. What is read here is untrusted text and is only ever written back into nft
syntax as names that passed the identifier check.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from mnp.api.errors import InvalidInput
from mnp.nft.model import TableShape

_TABLE = re.compile(r"table inet (\S+) \{")
_BLOCK = re.compile(r"\t(map|set|chain) (\S+) \{")
_BASE = re.compile(r"\t\t(type \S+ hook \S+ priority \S+; policy \S+;)")


def parse_shape(text: str) -> TableShape | None:
    """The maps, sets and chains (with base chain declarations) of one `nft -t list table` output.

    None when the text holds anything this module does not know how to empty and redefine (a
    flowtable, a named counter, an unexpected layout, a name that is not a plain identifier): the
    caller then replaces the table as a whole.
    """
    lines = text.splitlines()
    if not lines or not (head := _TABLE.fullmatch(lines[0])) or lines[-1] != "}":
        return None
    maps: list[str] = []
    sets: list[str] = []
    chains: list[tuple[str, str]] = []
    current: tuple[str, str] | None = None
    base = ""
    for line in lines[1:-1]:
        if not line:
            continue
        if current is None:
            if not (block := _BLOCK.fullmatch(line)):
                return None
            current, base = (block.group(1), block.group(2)), ""
        elif not line.startswith("\t\t") and line != "\t}":
            return None  # a block opened inside another: not a layout nft prints
        elif line == "\t}":
            kind, name = current
            if kind == "chain":
                chains.append((name, base))
            else:
                (maps if kind == "map" else sets).append(name)
            current = None
        elif current[0] == "chain" and (declared := _BASE.fullmatch(line)):
            base = declared.group(1)
    if current is not None:
        return None
    try:
        return TableShape(head.group(1), tuple(maps), tuple(sets), tuple(chains))
    except (ValueError, InvalidInput):
        return None


def listing_digest(json_text: str) -> str:
    """A digest of a table's content from `nft -j list table`, equal for equal tables.

    Kernel handles are dropped and set elements sorted: a hash set lists its elements in an order
    that depends on a per-set hash seed, so the same table lists differently in two netns.
    """
    data = json.loads(json_text)
    objects = [o for o in data.get("nftables", []) if "metainfo" not in o]
    canonical = json.dumps(_normalised(objects), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _normalised(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _normalised(v, k) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        items = [_normalised(v) for v in value]
        if key in ("elem", "set"):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return items
    return value


__all__ = ["listing_digest", "parse_shape"]
