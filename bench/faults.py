"""Recovery figures under faults (issue 8): the scenarios of tests/kernel/test_reliability.py, measured.

A 2-node local cluster with mnp deployed from deploy/ (controller Deployment with leader election,
agent DaemonSet), one policed pod, one allowed and one unselected peer, and a prober making real TCP
connections every 75 ms (one allowed flow, two denied). Each scenario (tests/kernel/fault_scenarios.py)
breaks one part; the table shows, over the scenario's window: probes made, denied flows that passed
(must be 0), allowed probes that failed, the longest time without an allowed pass, the time until the
change made around the fault was Applied and in the pod's table, and the leader takeover time.

    .venv/bin/python bench/faults.py [--scenario churn --scenario agent ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kernel"))  # the scenarios and the prober the tests use
from fault_scenarios import SCENARIOS, Figures, bed  # noqa: E402


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(figures: list[Figures]) -> str:
    head = (
        "| fault | probes | denied passes | allowed failures | allowed gap max s | converge s "
        "| takeover s |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {f.scenario} | {f.samples} | {f.denied_passes} | {f.allowed_failures} | "
        f"{f.allowed_gap_max_s:.2f} | {_seconds(f.converge_s)} | {_seconds(f.takeover_s)} |"
        for f in figures
    ]
    notes = [f"- {f.scenario}: {f.notes}" for f in figures if f.notes]
    problems = [f"- **{f.scenario}: {p}**" for f in figures for p in f.problems]
    return "\n".join([head, *rows, "", *notes, *(["", "Problems:", *problems] if problems else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all, in order")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    root = Path(tempfile.mkdtemp(prefix="mnp", dir="/tmp"))
    figures: list[Figures] = []
    started = time.monotonic()
    try:
        with bed(root) as b:
            for name in names:
                print(f"{name}...", file=sys.stderr, flush=True)
                figures.append(SCENARIOS[name](b))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(figures))
    print(f"\n{len(figures)} scenarios in {time.monotonic() - started:.0f}s")
    if args.json:
        out: dict[str, Any] = {
            "figures": [f.row() | {"problems": f.problems} for f in figures],
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 1 if any(f.problems for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
