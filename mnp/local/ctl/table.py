"""Text tables from the API server's Table answers (`as=Table;v=v1;g=meta.k8s.io`), as kubectl prints them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_VALUE = "<none>"
PADDING = 3  # kubectl's tabwriter padding


def _cell(value: Any) -> str:
    if value is None or value == "":
        return NO_VALUE if value is None else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by at least PADDING spaces; no trailing spaces."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i] + PADDING) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_table(table: Mapping[str, Any], *, wide: bool = False, with_namespace: bool = False) -> str:
    """The Table as text: priority-0 columns (all with `wide`), NAMESPACE first for `-A`.

    An empty table prints nothing (the caller says "No resources found" on stderr, as kubectl does).
    """
    columns = list(table.get("columnDefinitions") or [])
    shown = [i for i, c in enumerate(columns) if wide or int(c.get("priority") or 0) == 0]
    header = [str(columns[i].get("name", "")).upper() for i in shown]
    out: list[list[str]] = []
    for row in table.get("rows") or []:
        cells = list(row.get("cells") or [])
        line = [_cell(cells[i]) if i < len(cells) else "" for i in shown]
        if with_namespace:
            meta = (row.get("object") or {}).get("metadata") or {}
            line.insert(0, str(meta.get("namespace") or ""))
        out.append(line)
    if not out:
        return ""
    if with_namespace:
        header.insert(0, "NAMESPACE")
    return format_rows([header, *out])


__all__ = ["format_rows", "format_table"]
