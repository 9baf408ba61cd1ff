"""Apply latency of one pod's table: in-process NetnsNft against `nsenter ... nft -f -` per apply.

For N exact peer addresses (10, 1k, 10k, 50k) it times a whole-table replace and, for the large sets,
a one-peer change sent as an incremental transaction (render_update). Rendering is timed apart.
Runs as root in a throwaway netns `mnpb-apply-<pid>`, removed on exit.

    sudo .venv/bin/python bench/apply.py [--quick] [--runs N] [--sizes 10,1000,10000,50000]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from mnp.api.ruleset import DirectionRules, Interface, Peer, PortSpec, Protocol, Rule, RulesetSpec
from mnp.nft.apply import NetnsNft, apply_nft_exec
from mnp.nft.render import RenderOptions, build_table, render_table_replace, render_update


@dataclass(frozen=True, slots=True)
class Samples:
    wall: list[float]
    cpu: list[float]


TARGETS_MS = {("replace", 1000): 5.0, ("replace", 50000): 150.0, ("one-peer", 50000): 10.0}


def ruleset(n: int, shift: int = 0) -> RulesetSpec:
    """N exact IPv4 peers allowed on TCP 80; `shift` swaps the last peer for another address."""
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    addresses = [base + i for i in range(n - 1)] + [base + n - 1 + shift]
    peers = tuple(Peer(ipaddress.IPv4Network((a, 32))) for a in addresses)
    rule = Rule("default/bench", 0, "net1", peers, (PortSpec(Protocol.TCP, 80),))
    return RulesetSpec(
        pod_uid="bench",
        node="node-1",
        policies=("default/bench",),
        interfaces=(Interface("net1", "default/net-a"),),
        ingress=DirectionRules(isolated=("net1",), rules=(rule,)),
    )


def _cpu_ms() -> float:
    """CPU time of this thread plus finished children: less disturbed than wall time by other load."""
    me, kids = resource.getrusage(resource.RUSAGE_THREAD), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


def timed(
    fn: Callable[[], object], runs: int, gap: float = 0.01, setup: Callable[[], object] | None = None
) -> Samples:
    wall, cpu = [], []
    for _ in range(runs):
        if setup is not None:
            setup()
        c0, start = _cpu_ms(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append(_cpu_ms() - c0)
        time.sleep(gap)
    return Samples(wall, cpu)


def p90(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(round(0.9 * len(xs))) - 1)]


Row = tuple[str, str, int, Samples]


def measure(nft: NetnsNft, path: str, n: int, runs: int) -> list[Row]:
    """All rows for one size: render, full replace, and (from 1k) a one-peer incremental change."""
    exec_runs = max(3, runs // 2) if n >= 10000 else runs
    specs = {shift: ruleset(n, shift) for shift in (0, 1)}
    tables = {shift: build_table(specs[shift], RenderOptions()) for shift in (0, 1)}
    full = render_table_replace(tables[0])

    def drop() -> None:
        nft.delete_table("mnp")
        time.sleep(0.1)  # let the kernel's deferred destruction of the old table finish first

    rows: list[Row] = [
        (
            "render (build + text)",
            "-",
            n,
            timed(lambda: render_table_replace(build_table(specs[0])), runs, 0),
        ),
        ("fresh (no table yet)", "NetnsNft", n, timed(lambda: nft.apply(full), runs, setup=drop)),
        ("replace", "NetnsNft", n, timed(lambda: nft.apply(full), runs)),
        ("replace", "nsenter nft -f", n, timed(lambda: apply_nft_exec(path, full), exec_runs)),
    ]
    if n < 1000:
        return rows
    forward, back = render_update(tables[0], tables[1]), render_update(tables[1], tables[0])
    assert forward and back, "one peer changed: the structure must stay equal"
    rows.append(("render_update (diff)", "-", n, timed(lambda: render_update(tables[0], tables[1]), runs, 0)))
    # Alternate forward and back so that every sample is a real change of one element.
    state = [0]

    def flip(apply: Callable[[str], None]) -> None:
        apply(forward if state[0] == 0 else back)
        state[0] ^= 1

    def exec_apply(script: str) -> None:
        apply_nft_exec(path, script)

    appliers: list[tuple[str, Callable[[str], None], int]] = [
        ("NetnsNft", nft.apply, runs),
        ("nsenter nft -f", exec_apply, exec_runs),
    ]
    for method, apply, count in appliers:
        nft.apply(full)
        state[0] = 0
        rows.append(("one-peer", method, n, timed(functools.partial(flip, apply), count)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 runs, sizes 10,1000,50000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sizes", default=None, help="default 10,1000,10000,50000 (--quick: 10,1000,50000)")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    default_sizes = "10,1000,50000" if args.quick else "10,1000,10000,50000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    if os.geteuid() != 0:
        print("bench/apply.py needs root (netns, nftables)", file=sys.stderr)
        return 1

    name = f"mnpb-apply-{os.getpid()}"
    path = f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    rows: list[Row] = []
    try:
        with NetnsNft(path) as nft:
            for n in sizes:
                rows.extend(measure(nft, path, n, runs))
            nft.delete_table("mnp")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)

    nft_version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    print(
        f"apply latency: {os.cpu_count()} CPUs, kernel {platform.release()}, {nft_version}, load {load:.1f}"
    )
    print(f"runs per point: {runs} (exec at >=10k: {max(3, runs // 2)}); times in ms\n")
    print("| operation | method | elements | median ms | p90 ms | CPU ms (median) | target |")
    print("|---|---|---:|---:|---:|---:|---|")
    for op, method, n, samples in rows:
        median = statistics.median(samples.wall)
        target = TARGETS_MS.get((op, n)) if method == "NetnsNft" else None
        verdict = f"≤ {target:g} {'✔' if median <= target else '✘'}" if target is not None else ""
        print(
            f"| {op} | {method} | {n:,} | {median:.2f} | {p90(samples.wall):.2f} "
            f"| {statistics.median(samples.cpu):.1f} | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
