"""Denied datagrams leaked while a pod's table is replaced, for three renderings under the same load.

A stream of UDP datagrams that no variant of srv's ruleset ever allows flows from pod `other` to srv
while srv's table is replaced over and over, alternating between three variants whose maps and chains
differ. Every datagram srv receives is a leak. Three renderings of the same tables take turns in rounds
(A, B, C, A, B, C, ...), so the machine's noise hits all of them alike:

  A  before:    base chains dispatch by `iifname vmap { "net1" : jump ingress-net1, ... }`, and the
                table is deleted and created anew (render_table_replace);
  B  swap only: the same vmap dispatch, the table flushed and redefined with its base chains kept
                hooked (render_table_swap with the shape read back from the kernel);
  C  now:       what the agent sends today (render_ruleset with table_shape: swap, and one plain
                `iifname "net1" jump ingress-net1` rule per isolated interface).

Busy-loop processes (--hogs) compete for the CPUs so that packets and commits interleave more often.
Runs as root, only in namespaces `mnpb-<pid>-*`, removed on exit with every process it started.

    .venv/bin/python bench/replace_leak.py [--replaces N] [--rounds R] [--hogs H] [--streams K]
                                           [--interval S] [--only ABC]

One UdpStream (a Python thread, interval 0.0001 s) sends ~3,000 datagrams/s here while replaces run;
the default four streams (ports 7301-7304, all denied) send ~10,000/s.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnp.api.ruleset import RulesetSpec, spec_from_raw
from mnp.local.nodes.fabric import Attachment, Fabric, remove_leftovers
from mnp.local.nodes.netns import list_netns
from mnp.local.nodes.probe import UdpStream
from mnp.nft.apply import NetnsNft
from mnp.nft.render import (
    RenderOptions,
    build_table,
    render_ruleset,
    render_table_replace,
    render_table_swap,
)

NET_A, NET_B = "bench/net-a", "bench/net-b"
SRV_A, SRV_B, CLI_A, CLI_B, OTHER_A = (
    "192.0.2.10",
    "198.51.100.10",
    "192.0.2.20",
    "198.51.100.20",
    "192.0.2.30",
)
DENIED_PORT = 7301  # UDP: no variant allows `other` to send here (nor anyone: UDP is allowed only 1-100)
TABLE = "mnp"


def _rule(
    iface: str, peers: list[dict[str, Any]], ports: list[dict[str, Any]] | None, index: int = 0
) -> dict[str, Any]:
    """One ruleset rule in wire form; ports None means every port."""
    out: dict[str, Any] = {"policy": "bench/p", "rule": index, "interface": iface, "peers": peers}
    if ports is not None:
        out["ports"] = ports
    return out


# Three variants, as in tests/kernel/test_enforce.py's atomic-replace test plus rules on net2: each
# replace changes the maps (exact / interval, v4) and the port chains of both interface chains.
_VARIANTS: tuple[list[dict[str, Any]], ...] = (
    [_rule("net1", [{"cidr": f"{CLI_A}/32"}], [{"protocol": "TCP", "port": 7200}])],
    [
        _rule(
            "net1",
            [{"cidr": f"{CLI_A}/32"}],
            [{"protocol": "TCP", "port": 7200}, {"protocol": "UDP", "port": 1, "endPort": 100}],
        ),
        _rule("net1", [{"cidr": "203.0.113.0/24"}], None, index=1),
        _rule("net2", [{"cidr": f"{CLI_B}/32"}], [{"protocol": "TCP", "port": 80}], index=2),
    ],
    [
        _rule(
            "net1",
            [{"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}],
            [{"protocol": "TCP", "port": 7200, "endPort": 7201}],
        ),
        _rule("net2", [{"cidr": "198.51.100.0/24"}], [{"protocol": "SCTP"}], index=1),
    ],
)


def variant_spec(rules: list[dict[str, Any]]) -> RulesetSpec:
    return spec_from_raw(
        {
            "podUID": "mnpb-srv-uid",
            "node": "node-1",
            "policies": ["bench/p"],
            "interfaces": [
                {"name": "net1", "network": NET_A, "ips": [SRV_A]},
                {"name": "net2", "network": NET_B, "ips": [SRV_B]},
            ],
            "ingress": {"isolated": ["net1", "net2"], "rules": rules},
        }
    )


# --- the three renderings ---------------------------------------------------------------------------

_DISPATCH = re.compile(r'^(\t+)(iifname|oifname) ("[^"]*") jump (\S+)$')


def vmap_dispatch(script: str) -> str:
    """The script with each base chain's run of `iifname "X" jump C` rules as one anonymous vmap rule.

    That is the text the renderer wrote before the dispatch became plain comparisons (commit 05982e3):
    `iifname vmap { "net1" : jump ingress-net1, "net2" : jump ingress-net2 }`.
    """
    out: list[str] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            entries = ", ".join(f"{m.group(3)} : jump {m.group(4)}" for m in run)
            out.append(f"{run[0].group(1)}{run[0].group(2)} vmap {{ {entries} }}")
            run.clear()

    for line in script.split("\n"):
        m = _DISPATCH.match(line)
        if m and (not run or m.group(2) == run[0].group(2)):
            run.append(m)
            continue
        flush()
        if m:
            run.append(m)
        else:
            out.append(line)
    flush()
    text = "\n".join(out)
    if " vmap { " not in text or any(_DISPATCH.match(line) for line in out):
        raise AssertionError("dispatch rules not turned into a vmap")
    return text


Renderer = Callable[[int, NetnsNft], str]  # (variant index, applier) -> the transaction to apply


def renderers(specs: list[RulesetSpec]) -> dict[str, tuple[str, Renderer]]:
    opts = RenderOptions(table=TABLE)
    tables = [build_table(s, opts) for s in specs]

    def before(i: int, nft: NetnsNft) -> str:
        return vmap_dispatch(render_table_replace(tables[i]))

    def swap_only(i: int, nft: NetnsNft) -> str:
        return vmap_dispatch(render_table_swap(tables[i], nft.table_shape(TABLE)))

    def now(i: int, nft: NetnsNft) -> str:
        return render_ruleset(specs[i], opts, nft.table_shape(TABLE))

    return {
        "A": ("before: vmap dispatch + delete/re-create table", before),
        "B": ("swap only: vmap dispatch + flush/redefine (base chains kept)", swap_only),
        "C": ("now: one `iifname` rule per interface + flush/redefine", now),
    }


# --- measurement ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    replaces: int = 0
    sent: int = 0
    leaked: int = 0
    seconds: float = 0.0


def segment(
    nft: NetnsNft, render: Renderer, n: int, other: str, srv: str, interval: float, streams: int
) -> tuple[int, int, int, float]:
    """Put variant 0 in place (no stream yet), then n replaces cycling through the variants under
    the denied streams; (replaces, datagrams sent during them, datagrams received, seconds)."""
    nft.apply(render(0, nft))
    opened: list[UdpStream] = []
    try:
        for k in range(streams):
            opened.append(UdpStream(other, srv, SRV_A, DENIED_PORT + k, interval=interval))
        time.sleep(0.02)  # let the senders get going
        sent0, started = sum(s.sent for s in opened), time.monotonic()
        for r in range(1, n + 1):
            nft.apply(render(r % len(_VARIANTS), nft))
        elapsed, sent = time.monotonic() - started, sum(s.sent for s in opened) - sent0
    finally:
        received = sum(s.stop()[1] for s in opened)
    # Before and after the replaces variant 0 is in place and drops the stream (see check_path), so
    # every datagram received leaked through a replace; `sent` counts only those sent during them.
    return n, sent, received, elapsed


def check_path(nft: NetnsNft, render: Renderer | None, other: str, srv: str, streams: int) -> int:
    """Datagrams received in 0.3 s with the table of variant 0 in place (render None: no table)."""
    if render is None:
        nft.delete_table(TABLE)
    else:
        nft.apply(render(0, nft))
    opened = [UdpStream(other, srv, SRV_A, DENIED_PORT + k, interval=0.001) for k in range(streams)]
    try:
        time.sleep(0.3)
    finally:
        received = sum(s.stop()[1] for s in opened)
    return received


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """Upper bound of a Poisson mean after observing k events (exact, by bisection)."""

    def cdf(mu: float) -> float:
        term = total = math.exp(-mu)
        for i in range(1, k + 1):
            term *= mu / i
            total += term
        return total

    lo, hi = float(k), float(k) + 10 + 10 * math.sqrt(k + 1)
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def start_hogs(n: int, hogs: list[subprocess.Popen[bytes]]) -> None:
    """n busy-loop processes, appended to `hogs` one by one (so that a failure leaves none unknown)."""
    for _ in range(n):
        hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for h in hogs:
        if h.poll() is None:
            h.kill()
    for h in hogs:
        h.wait()


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, prefix: str) -> tuple[dict[str, Tally], dict[str, str]]:
    specs = [variant_spec(v) for v in _VARIANTS]
    rends = renderers(specs)
    order = [k for k in "ABC" if k in args.only]
    tallies = {k: Tally() for k in order}
    per_round = [
        args.replaces // args.rounds + (1 if r < args.replaces % args.rounds else 0)
        for r in range(args.rounds)
    ]
    hogs: list[subprocess.Popen[bytes]] = []
    with Fabric(prefix, nodes=1) as fabric:
        srv = fabric.add_pod(
            "srv",
            1,
            [Attachment(NET_A, "net1", (f"{SRV_A}/24",)), Attachment(NET_B, "net2", (f"{SRV_B}/24",))],
        )
        fabric.add_pod(
            "cli",
            1,
            [Attachment(NET_A, "net1", (f"{CLI_A}/24",)), Attachment(NET_B, "net2", (f"{CLI_B}/24",))],
        )
        other = fabric.add_pod("other", 1, [Attachment(NET_A, "net1", (f"{OTHER_A}/24",))])
        nft = NetnsNft(srv.netns_path)
        try:
            if check_path(nft, None, other.netns_name, srv.netns_name, args.streams) == 0:
                raise RuntimeError("no datagram from other reached srv without a table: nothing to measure")
            for k in order:
                got = check_path(nft, rends[k][1], other.netns_name, srv.netns_name, args.streams)
                if got:
                    raise RuntimeError(
                        f"rendering {k} lets {got} denied datagrams through without any replace"
                    )
            progress(f"fabric {prefix}-* up; path and tables checked; {args.hogs} CPU hogs")
            start_hogs(args.hogs, hogs)
            for r, n in enumerate(per_round):
                for k in order:
                    done, sent, got, secs = segment(
                        nft, rends[k][1], n, other.netns_name, srv.netns_name, args.interval, args.streams
                    )
                    t = tallies[k]
                    t.replaces += done
                    t.sent += sent
                    t.leaked += got
                    t.seconds += secs
                    progress(
                        f"round {r + 1}/{args.rounds} {k}: {done} replaces in {secs:.1f}s, "
                        f"{sent} sent, {got} leaked (total {t.leaked})"
                    )
        finally:
            stop_hogs(hogs)
            try:
                nft.delete_table(TABLE)
            finally:
                nft.close()  # it pins the srv netns, which would outlive the fabric otherwise
    return tallies, {k: rends[k][0] for k in order}


def report(tallies: dict[str, Tally], names: dict[str, str]) -> str:
    lines = [
        "| rendering | replaces | datagrams sent | leaked | leaks per 10k replaces "
        "| 95% upper bound per 10k | replaces/s | datagrams/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, t in tallies.items():
        per10k = 1e4 * t.leaked / t.replaces if t.replaces else 0.0
        upper = 1e4 * poisson_upper(t.leaked) / t.replaces if t.replaces else 0.0
        secs = max(t.seconds, 1e-9)
        lines.append(
            f"| {k} {names[k]} | {t.replaces:,} | {t.sent:,} | {t.leaked} | {per10k:.1f} | {upper:.1f} "
            f"| {t.replaces / secs:,.0f} | {t.sent / secs:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replaces", type=int, default=3000, help="replaces per rendering (default 3000)")
    p.add_argument(
        "--rounds", type=int, default=10, help="rounds A,B,C the replaces are split into (default 10)"
    )
    p.add_argument("--hogs", type=int, default=2, help="busy-loop processes during the replaces (default 2)")
    p.add_argument(
        "--interval", type=float, default=0.0001, help="UdpStream send interval in s (default 0.0001)"
    )
    p.add_argument("--streams", type=int, default=4, help="denied UDP streams, one port each (default 4)")
    p.add_argument("--only", default="ABC", help="renderings to run (default ABC)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("error: needs root (network namespaces, nftables)")
    if args.rounds < 1 or args.replaces < args.rounds or args.streams < 1:
        raise SystemExit("error: need --rounds >= 1, --replaces >= --rounds and --streams >= 1")
    if not args.only or set(args.only) - set("ABC"):
        raise SystemExit("error: --only takes letters of ABC")
    prefix = f"mnpb-{os.getpid()}"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        tallies, names = run(args, prefix)
    except KeyboardInterrupt:
        return 130
    finally:
        if left := list_netns(prefix + "-"):
            print(f"warning: removing namespaces left behind: {left}", file=sys.stderr)
            remove_leftovers(prefix)
    nft_version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    command = " ".join(
        [".venv/bin/python bench/replace_leak.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(
        f"Replace leaks, {started}, `{command}` ({os.cpu_count()} CPUs, kernel {platform.release()}, "
        f"{nft_version}, load {load:.1f} at start, {os.getloadavg()[0]:.1f} at end)\n"
    )
    print(report(tallies, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
