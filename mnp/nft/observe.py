"""Reads a table back from `nft list` output (pure: text in, values out).

The kernel is the source of truth for what a pod's netns holds: someone may have flushed, edited or
half-deleted our table. What is read here is untrusted text and is only ever written back into nft
syntax as names that passed the identifier check.
"""

from __future__ import annotations

import re

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


__all__ = ["parse_shape"]
