"""Turns the paired samples of the data-plane benchmark into ratios, +ns costs and a markdown report.

Every sample pairs the pod under test with the reference pod (same node, never a table), measured back
to back, so each ratio is against a no-firewall baseline taken at almost the same moment.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

TARGET = 0.95


@dataclass(frozen=True, slots=True)
class Rate:
    """One sample's rate (pps, flows/s or Gbit/s): its best sub-window, and its whole-window mean."""

    best: float
    mean: float
    per_cpu: float = 0.0  # delivered per CPU-second of the generator's CPU (generator + softirq)
    share: float = 0.0  # the fraction of the window that CPU gave to the generator and its softirq


@dataclass(slots=True)
class Pair:
    """One paired sample: the pod under test and the reference. `test`/`ref` are the best sub-windows."""

    test: float
    ref: float
    flags: list[str] = field(default_factory=list)
    test_mean: float = 0.0
    ref_mean: float = 0.0
    test_cpu: float = 0.0
    ref_cpu: float = 0.0
    test_share: float = 0.0
    ref_share: float = 0.0

    @classmethod
    def of(cls, test: Rate, ref: Rate, flags: list[str]) -> Pair:
        return cls(
            test.best, ref.best, flags, test.mean, ref.mean, test.per_cpu, ref.per_cpu, test.share, ref.share
        )

    @property
    def cpu_ratio(self) -> float:
        return self.test_cpu / self.ref_cpu if self.ref_cpu > 0 else 0.0

    @property
    def mean_ratio(self) -> float:
        return self.test_mean / self.ref_mean if self.ref_mean > 0 else 0.0

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
    flags: list[str] = field(default_factory=list)


def median_ratio(pairs: list[Pair], stat: str = "best") -> float | None:
    """Median over pairs of the ratio of one statistic: "best" sub-window, window "mean", or "cpu"."""
    if not pairs:
        return None
    pick = {"best": lambda p: p.ratio, "mean": lambda p: p.mean_ratio, "cpu": lambda p: p.cpu_ratio}[stat]
    return statistics.median(pick(p) for p in pairs)


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


def flatness(rows: dict[str, RowResult], attr: str, big: str, small: str, stat: str = "best") -> float | None:
    """How much of the small table's rate the big one keeps: the quotient of their median ratios."""
    a, b = median_ratio(getattr(rows[big], attr), stat), median_ratio(getattr(rows[small], attr), stat)
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
    checks: list[tuple[str, dict[str, float | None]]] = []
    for big, small in (("mnp-big", "mnp-1"), ("mnp-big-cidr", "mnp-1-cidr")):
        if big in by_name and small in by_name:
            for attr, what in (("established", "established pps"), ("new_flows", "new flows")):
                values = {st: flatness(by_name, attr, big, small, st) for st in ("best", "mean", "cpu")}
                checks.append((f"{what}, {big} / {small}", values))
    for big in ("mnp-big", "mnp-big-cidr"):
        if big in by_name:
            bulk = by_name[big].bulk
            values = {st: median_ratio(bulk, st) for st in ("best", "mean")}
            checks.append((f"bulk TCP, {big} / pod with no table", values))
    for label, values in checks:
        value = values["best"]
        shown = "–" if value is None else f"{value:.3f}"
        others = [f"{st}: {v:.3f}" for st, v in values.items() if st != "best" and v is not None]
        if others:
            shown += f" ({', '.join(others)})"
        met = "–" if value is None else ("yes" if value >= TARGET else "**no**")
        out.append(f"| {label} ≥ {TARGET} | {shown} | {met} |")
    for name in ("mnp-1", "mnp-big"):
        if name in by_name:
            r = by_name[name]
            cost = f"+{fmt_ns(r.established)} ns/packet, +{fmt_ns(r.new_flows)} ns/new flow"
            out.append(f"| fixed cost of the {name} table against a pod with no table | {cost} | (report) |")
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
        f"{meta['bulk_seconds']:g} s), each the pod under test over the reference pod (same node, no table) "
        f"measured back to back. A sample's rate is its best {meta['sub_window_s']:g} s sub-window of "
        f"{meta['window_s']:g} s (bulk: best 0.5 s iperf3 interval), which discards CPU stolen by other jobs "
        "on this shared VM. In parentheses: the same statistic on whole-window means (mean) and on packets "
        "per CPU-second of the generator's CPU (cpu: trafgen worker + ksoftirqd, whose clocks include the "
        "receive path they drive). +ns: median extra time per packet or per new flow over the paired "
        "reference pod. Differences under about 0.05 are noise."
    )
    flagged = [
        (r.name, kind, p.flags)
        for r in rows
        for kind in ("established", "new_flows", "bulk")
        for p in getattr(r, kind)
        if p.flags
    ]
    flagged += [(r.name, "table", [f]) for r in rows for f in r.flags]
    if flagged:
        out.append("")
        out.append("⚑ flagged samples:")
        out += [f"- {name} {kind}: {', '.join(flags)}" for name, kind, flags in flagged]
    return "\n".join(out)


def to_json(rows: list[RowResult], meta: dict[str, Any]) -> dict[str, Any]:
    def pairs(ps: list[Pair]) -> list[dict[str, Any]]:
        return [
            {
                "test": p.test,
                "ref": p.ref,
                "ratio": p.ratio,
                "test_mean": p.test_mean,
                "ref_mean": p.ref_mean,
                "mean_ratio": p.mean_ratio,
                "test_per_cpu": p.test_cpu,
                "ref_per_cpu": p.ref_cpu,
                "cpu_ratio": p.cpu_ratio,
                "test_share": p.test_share,
                "ref_share": p.ref_share,
                "flags": p.flags,
            }
            for p in ps
        ]

    return {
        "meta": meta,
        "rows": [
            {
                "name": r.name,
                "description": r.description,
                "ct": r.ct,
                "load_ms": r.load_ms,
                "script_bytes": r.script_bytes,
                "flags": r.flags,
                "established": pairs(r.established),
                "new_flows": pairs(r.new_flows),
                "bulk": pairs(r.bulk),
            }
            for r in rows
        ],
    }


def from_json(docs: list[dict[str, Any]]) -> tuple[list[RowResult], dict[str, Any]]:
    """Rows pooled over the raw samples of several runs (files written by --json), in first-seen order."""
    rows: dict[str, RowResult] = {}
    for doc in docs:
        for raw in doc["rows"]:
            row = rows.setdefault(raw["name"], RowResult(raw["name"], raw["description"], raw["ct"]))
            if raw.get("load_ms") is not None:
                row.load_ms = raw["load_ms"] if row.load_ms is None else max(row.load_ms, raw["load_ms"])
            row.flags += raw.get("flags", [])
            for kind in ("established", "new_flows", "bulk"):
                getattr(row, kind).extend(
                    Pair(
                        p["test"],
                        p["ref"],
                        list(p["flags"]),
                        p.get("test_mean", 0.0),
                        p.get("ref_mean", 0.0),
                        p.get("test_per_cpu", 0.0),
                        p.get("ref_per_cpu", 0.0),
                        p.get("test_share", 0.0),
                        p.get("ref_share", 0.0),
                    )
                    for p in raw[kind]
                )
    metas = [d["meta"] for d in docs]
    meta = dict(metas[-1])
    meta["date"] = ", ".join(m["date"] for m in metas)
    meta["reps"] = "+".join(str(m["reps"]) for m in metas)
    meta["bulk_reps"] = "+".join(str(m["bulk_reps"]) for m in metas)
    return list(rows.values()), meta
