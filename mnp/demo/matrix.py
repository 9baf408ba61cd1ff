"""The connectivity matrix as a table a person reads (pure): rows connect from, columns are connected to.

A cell is what real connections over IPv4 and IPv6 found: `✔` both open, `✘` both blocked, and
`v4 only` / `v6 only` when the families disagree (which no policy of the demo asks for). Against an
earlier matrix, a changed cell is marked `*`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

OPEN, BLOCKED = "✔", "✘"
SELF = "·"
CHANGED = "*"

Pair = tuple[str, str]


def cell(v4: bool, v6: bool) -> str:
    """One cell from the two families' outcomes."""
    if v4 == v6:
        return OPEN if v4 else BLOCKED
    return "v4 only" if v4 else "v6 only"


def cells(reached: Mapping[tuple[str, str, int], bool]) -> dict[Pair, str]:
    """{(from, to): cell} from {(from, to, family): connected?}."""
    pairs = dict.fromkeys((src, dst) for src, dst, _ in reached)
    return {(s, d): cell(reached.get((s, d, 4), False), reached.get((s, d, 6), False)) for s, d in pairs}


def expected_cells(allowed: Mapping[Pair, bool]) -> dict[Pair, str]:
    """The cells a matrix should show when each pair may (both families) or may not connect."""
    return {pair: OPEN if ok else BLOCKED for pair, ok in allowed.items()}


def differences(got: Mapping[Pair, str], want: Mapping[Pair, str]) -> list[str]:
    """`from -> to: got X, expected Y` for every pair that is not as wanted (a pair missing counts)."""
    return [
        f"{src} -> {dst}: got {got.get((src, dst), 'nothing')}, expected {want[src, dst]}"
        for src, dst in want
        if got.get((src, dst)) != want[src, dst]
    ]


def render(
    names: Sequence[str],
    labels: Mapping[str, str],
    got: Mapping[Pair, str],
    before: Mapping[Pair, str] | None = None,
) -> str:
    """The table: one row per name (from), one column per name (to, shown as its label).

    With `before`, cells that differ from it carry CHANGED, and a legend line says so.
    """
    header = ["from \\ to", *(labels.get(n, n) for n in names)]
    rows = [header]
    changed = 0
    for src in names:
        row = [src]
        for dst in names:
            if src == dst:
                row.append(SELF)
                continue
            value = got.get((src, dst), "?")
            if before is not None and before.get((src, dst)) != value:
                value += CHANGED
                changed += 1
            row.append(value)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    legend = f"{OPEN} open   {BLOCKED} blocked   {SELF} self"
    if before is not None:
        legend += f"   {CHANGED} changed ({changed})"
    return "\n".join([*lines, legend])


__all__ = ["BLOCKED", "CHANGED", "OPEN", "cell", "cells", "differences", "expected_cells", "render"]
