"""Every headline figure of bench/README.md in one run, one after another on the same machine (issue 8).

Runs, in order: the controller's compile (bench/controller.py), policy end to end for 50 and 200 pods
(bench/policy_e2e.py), the agent (bench/agent.py), the fault scenarios (bench/faults.py), apply latency
(bench/apply.py --quick) and the data plane (bench/dataplane.py --quick). Each heavy part runs as its own
process so that one leaves nothing behind for the next. Prints one headline table (figure, target, met,
the command that reproduces it), then each benchmark's own tables; `--json FILE` keeps the numbers.

    .venv/bin/python bench/summary.py [--quick] [--skip dataplane --skip agent ...] [--json FILE]

`--quick` shrinks the agent's idle set (100 instead of 250 rulesets per node, 20 s instead of 60 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import controller  # noqa: E402
import policy_e2e  # noqa: E402

PARTS = ("controller", "e2e", "agent", "faults", "apply", "dataplane")
Headline = list[tuple[str, str, str, str, str]]  # figure, value, target, met, command


def _python(script: str, *args: str, json_out: Path | None = None) -> str:
    argv = [sys.executable, str(BENCH / script), *args, *(["--json", str(json_out)] if json_out else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def _met(ok: bool) -> str:
    return "✔" if ok else "✘"


def part_controller(head: Headline, out: dict[str, Any]) -> str:
    rows = controller.compile_figures(2000, 200, 5)
    out["controller"] = rows
    values = dict(rows)
    ratio = next(v for k, v in rows if k == "incremental / full, median")
    percent = float(ratio.split("%")[0])
    head.append(
        (
            "one pod label change, incremental / full compile (2,000 pods × 200 policies)",
            ratio.split(" ")[0],
            "≤ 2%",
            _met(percent <= 2),
            "bench/controller.py",
        )
    )
    full = next(v for k, v in values.items() if k.startswith("full compile"))
    head.append(
        ("full compile, 2,000 pods × 200 policies (median / fastest)", full, "", "", "bench/controller.py")
    )
    return "\n".join(["| measurement | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def part_e2e(head: Headline, out: dict[str, Any]) -> str:
    tables = []
    for pods in (50, 200):
        rows, cpu = policy_e2e.run(pods)
        out[f"e2e_{pods}"] = rows
        out[f"e2e_{pods}_cpu"] = cpu
        for what, times in rows:
            if "Applied" in what:
                p99 = policy_e2e.p99(times)
                head.append(
                    (
                        f"{pods} pods: {what.split(':')[0]} → every ruleset Applied, p50 / p99",
                        f"{statistics.median(times):.2f} / {p99:.2f} s",
                        "p99 ≤ 2 s" if pods == 200 else "",
                        _met(p99 <= 2) if pods == 200 else "",
                        f"bench/policy_e2e.py --pods {pods}",
                    )
                )
        tables.append(policy_e2e.table(pods, rows))
        tables.append(policy_e2e.cpu_table(pods, cpu))
    return "\n\n".join(tables)


def part_agent(head: Headline, out: dict[str, Any], quick: bool) -> str:
    args = ["--idle-pods-per-node", "100", "--idle-seconds", "20"] if quick else []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "agent.json"
        text = _python("agent.py", *args, json_out=path)
        data = json.loads(path.read_text())
    out["agent"] = {k: data[k] for k in ("latency", "idle") if k in data}
    for row in data["latency"]:
        head.append(
            (
                f"agent: {row['what']}, ruleset written → Applied p50 / p99",
                f"{row['p50_s']:.2f} / {row['p99_s']:.2f} s",
                "p99 ≤ 1 s",
                _met(row["p99_s"] <= 1),
                "bench/agent.py",
            )
        )
    idle = max(s["cpu_pct"] for s in data["idle"].values())
    rss = max(s["rss_mib"] for s in data["idle"].values())
    per_node = max(data["idle_pods_per_node"].values())
    head.append(
        (
            f"agent idle CPU with {per_node} rulesets per node (RSS)",
            f"{idle:.2f} % of a core ({rss:.0f} MiB)",
            "< 1%",
            _met(idle < 1),
            "bench/agent.py",
        )
    )
    return text.split("\n\n", 1)[-1] if "\n\n" in text else text


def part_faults(head: Headline, out: dict[str, Any]) -> str:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "faults.json"
        text = _python("faults.py", json_out=path)
        figures = json.loads(path.read_text())["figures"]
    out["faults"] = figures
    for f in figures:
        recovery = f"gap {f['allowed_gap_max_s']:.2f} s"
        if f.get("converge_s") is not None:
            recovery += f", converged {f['converge_s']:.2f} s"
        if f.get("takeover_s") is not None:
            recovery += f", takeover {f['takeover_s']:.2f} s"
        head.append(
            (
                f"fault {f['scenario']}: denied passes; allowed-flow gap, convergence",
                f"{f['denied_passes']} denied; {recovery}",
                "0 denied",
                _met(f["denied_passes"] == 0 and not f["problems"]),
                f"bench/faults.py --scenario {f['scenario']}",
            )
        )
    return text


def part_apply(head: Headline, out: dict[str, Any]) -> str:
    text = _python("apply.py", "--quick")
    out["apply"] = text
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "NetnsNft" and cells[6]:
            head.append(
                (
                    f"apply, {cells[0]}, {cells[2]} elements, median",
                    f"{cells[3]} ms",
                    cells[6].rsplit(" ", 1)[0],
                    cells[6].rsplit(" ", 1)[1],
                    "bench/apply.py --quick",
                )
            )
    return text


def part_dataplane(head: Headline, out: dict[str, Any]) -> str:
    text = _python("dataplane.py", "--quick")
    out["dataplane"] = text
    head.append(
        (
            "data plane: see its table below (one quick pass: 1 sample per row)",
            "",
            "",
            "",
            "bench/dataplane.py",
        )
    )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smaller idle set for the agent")
    parser.add_argument("--skip", action="append", choices=PARTS, default=[], help="leave a part out")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/summary.py needs root (network namespaces, nftables, containerd)", file=sys.stderr)
        return 1
    head: Headline = []
    out: dict[str, Any] = {"load_start": os.getloadavg()}
    sections: list[tuple[str, str]] = []
    parts: dict[str, Callable[[], str]] = {
        "controller": lambda: part_controller(head, out),
        "e2e": lambda: part_e2e(head, out),
        "agent": lambda: part_agent(head, out, args.quick),
        "faults": lambda: part_faults(head, out),
        "apply": lambda: part_apply(head, out),
        "dataplane": lambda: part_dataplane(head, out),
    }
    started = time.monotonic()
    for name in PARTS:
        if name in args.skip:
            continue
        print(f"[{time.monotonic() - started:6.0f}s] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        text = parts[name]()
        sections.append((f"{name} ({time.monotonic() - t0:.0f} s)", text))
    out["load_end"] = os.getloadavg()
    print(
        f"bench/summary.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, load {out['load_start'][0]:.1f} → {out['load_end'][0]:.1f}, "
        f"{time.monotonic() - started:.0f} s in all\n"
    )
    print("| figure | measured | target | met | reproduce with |\n|---|---|---|---|---|")
    for figure, value, target, met, command in head:
        print(f"| {figure} | {value} | {target} | {met} | `.venv/bin/python {command}` |")
    for title, text in sections:
        print(f"\n### {title}\n\n{text.strip()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
