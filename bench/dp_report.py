"""Turns the paired samples of the data-plane benchmark into ratios, +ns costs and a markdown report.

Every sample pairs the pod under test with the reference pod (same node, never a table), measured back
to back, so each ratio is against a no-firewall baseline taken at almost the same moment.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

TARGET = 0.95


@dataclass(slots=True)
class Pair:
    """One paired sample: rate of the pod under test and of the reference (pps, flows/s or Gbit/s)."""

    test: float
    ref: float
    flags: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.test / self.ref if self.ref > 0 else 0.0

    @property
    def extra_ns(self) -> float:
        """Extra time per packet (or flow) of the pod under test over the reference, in ns."""
        if self.test <= 0 or self.ref <= 0:
            return float("inf")
        return 1e9 / self.test - 1e9 / self.ref


@dataclass(slots=True)
class RowResult:
    name: str
    description: str
    ct: bool = False
    load_ms: float | None = None
    script_bytes: int = 0
    established: list[Pair] = field(default_factory=list)
    new_flows: list[Pair] = field(default_factory=list)
    bulk: list[Pair] = field(default_factory=list)


def median_ratio(pairs: list[Pair]) -> float | None:
    return statistics.median(p.ratio for p in pairs) if pairs else None


def fmt_ratio(pairs: list[Pair]) -> str:
    if not pairs:
        return "–"
    rs = [p.ratio for p in pairs]
    flag = " ⚑" if any(p.flags for p in pairs) else ""
    return f"{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]{flag}"


def fmt_ns(pairs: list[Pair]) -> str:
    if not pairs:
        return "–"
    return f"{statistics.median(p.extra_ns for p in pairs):,.0f}"


def ref_median(rows: list[RowResult], attr: str) -> tuple[float, float, float] | None:
    refs = [p.ref for r in rows for p in getattr(r, attr)]
    if not refs:
        return None
    return statistics.median(refs), min(refs), max(refs)


def flatness(rows: dict[str, RowResult], attr: str, big: str, small: str) -> float | None:
    a, b = median_ratio(getattr(rows[big], attr)), median_ratio(getattr(rows[small], attr))
    if a is None or b is None or b == 0:
        return None
    return a / b


def markdown(rows: list[RowResult], meta: dict[str, Any]) -> str:
    """The report: one table of rows, the targets, the reference rates, and any flags raised."""
    out = [
        "| row | table | est. pps ratio | +ns/pkt | new-flow ratio | +ns/flow | bulk TCP ratio | load ms |",
        "|---|---|---|---:|---|---:|---|---:|",
    ]
    for r in rows:
        load = "–" if r.load_ms is None else f"{r.load_ms:.0f}"
        out.append(
            f"| {r.name} | {r.description} | {fmt_ratio(r.established)} | {fmt_ns(r.established)} | "
            f"{fmt_ratio(r.new_flows)} | {fmt_ns(r.new_flows)} | {fmt_ratio(r.bulk)} | {load} |"
        )
    by_name = {r.name: r for r in rows}
    out += ["", "| target | value | met |", "|---|---:|---|"]
    checks: list[tuple[str, float | None]] = []
    if "mnp-big" in by_name and "mnp-1" in by_name:
        checks.append(
            ("established pps, mnp-big / mnp-1", flatness(by_name, "established", "mnp-big", "mnp-1"))
        )
        checks.append(("new flows, mnp-big / mnp-1", flatness(by_name, "new_flows", "mnp-big", "mnp-1")))
    if "mnp-big" in by_name:
        checks.append(("bulk TCP, mnp-big / pod with no table", median_ratio(by_name["mnp-big"].bulk)))
    for label, value in checks:
        shown = "–" if value is None else f"{value:.2f}"
        met = "–" if value is None else ("yes" if value >= TARGET else "**no**")
        out.append(f"| {label} ≥ {TARGET} | {shown} | {met} |")
    out.append("")
    for attr, unit, what in (
        ("established", "pps", "established"),
        ("new_flows", "flows/s", "new flows"),
        ("bulk", "Gbit/s", "bulk TCP"),
    ):
        ref = ref_median(rows, attr)
        if ref:
            fmt = "{:,.1f}" if unit == "Gbit/s" else "{:,.0f}"
            med, lo, hi = (fmt.format(x) for x in ref)
            out.append(f"Reference pod ({what}): {med} {unit} [{lo}–{hi}].  ")
    out.append(
        f"Ratios: median [min–max] of {meta['reps']} pairs (bulk: {meta['bulk_reps']} pairs of "
        f"{meta['bulk_seconds']:g} s); +ns: median extra time per packet or per new flow over the paired "
        f"reference pod. Differences under about 0.05 are noise on this machine."
    )
    flagged = [
        (r.name, kind, p.flags)
        for r in rows
        for kind in ("established", "new_flows", "bulk")
        for p in getattr(r, kind)
        if p.flags
    ]
    if flagged:
        out.append("")
        out.append("⚑ flagged samples:")
        out += [f"- {name} {kind}: {', '.join(flags)}" for name, kind, flags in flagged]
    return "\n".join(out)


def to_json(rows: list[RowResult], meta: dict[str, Any]) -> dict[str, Any]:
    def pairs(ps: list[Pair]) -> list[dict[str, Any]]:
        return [{"test": p.test, "ref": p.ref, "ratio": p.ratio, "flags": p.flags} for p in ps]

    return {
        "meta": meta,
        "rows": [
            {
                "name": r.name,
                "description": r.description,
                "ct": r.ct,
                "load_ms": r.load_ms,
                "script_bytes": r.script_bytes,
                "established": pairs(r.established),
                "new_flows": pairs(r.new_flows),
                "bulk": pairs(r.bulk),
            }
            for r in rows
        ],
    }
