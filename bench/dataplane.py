#!/usr/bin/env python3
"""Data-plane benchmark: what mnp's nft table costs a pod's traffic, against a pod with no table.

Method of /work/shared/notes/dataplane-anchors.md §1: a client pod on node 1 and two pods on node 2
(`srv` gets the table under test, `ref` never has one), macvlan links on a fabric bridge, all in
namespaces named mnpb-<pid>-*. trafgen blasts 60-byte UDP frames (one flow, or a new flow per packet),
iperf3 measures bulk TCP; each sample pairs srv with ref back to back in alternating order. Rows:
no table, mnp's renderer with one peer and with 10k peers + 1k CIDRs over 100 policies (client found
by address, or by CIDR), and one-rule-per-peer tables for contrast. Every repetition visits every row.

Run as root: .venv/bin/python bench/dataplane.py [--quick] [--reps N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_report as report
import dp_rulesets as rulesets
import dp_traffic as traffic
from dp_report import Pair, Rate, RowResult
from dp_traffic import Pod, Procs

CLIENT_IP, SERVER_IP, REF_IP = "192.0.2.2", "192.0.2.1", "192.0.2.3"
CLIENT_CIDR = "192.0.2.0/30"
DENIED_IP = "192.0.2.9"  # a second client address that no ruleset allows
BIG = rulesets.Shape(peers=10_000, cidrs=1_000, policies=100)
SETTLE_S = 1.0  # after a load, before the first sample
# A sample's rate is its best sub-window: other jobs on this shared 2-core VM steal CPU0 from the
# generator in bursts, which the mean of the window would charge to whichever pod was being measured.
SUB_WINDOW_S = 0.25
CT_TROUBLE = ("insert_failed", "drop", "early_drop")


@dataclass(frozen=True, slots=True)
class Settings:
    reps: int
    warmup_s: float
    window_s: float
    sub_s: float
    nice: int
    bulk_reps: int
    bulk_s: float
    rows: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowSpec:
    name: str
    description: str
    script: Callable[[str], str] | None  # node name -> nft script for srv; None = no table
    bulk: bool = True  # also measure bulk TCP (it takes the longest; the contrast rows skip it)


def render_mnp(shape: rulesets.Shape, client_cidr: str | None = None) -> Callable[[str], str]:
    def make(node: str) -> str:
        from mnp.nft.render import RenderOptions, render_ruleset

        spec = rulesets.mnp_spec(shape, SERVER_IP, CLIENT_IP, node, client_cidr)
        return render_ruleset(spec, RenderOptions())

    return make


ROWS = (
    RowSpec("none", "no table", None),
    RowSpec("mnp-1", "mnp renderer, 1 peer, 1 policy", render_mnp(rulesets.Shape(1, 0, 1))),
    RowSpec(
        "mnp-big",
        f"mnp renderer, {BIG.peers:,} peers + {BIG.cidrs:,} CIDRs, {BIG.policies} policies",
        render_mnp(BIG),
    ),
    # The same two with the client admitted by a CIDR (the interval-map path) instead of its address.
    RowSpec(
        "mnp-1-cidr",
        f"as mnp-1, client via CIDR {CLIENT_CIDR}",
        render_mnp(rulesets.Shape(1, 1, 1), CLIENT_CIDR),
        bulk=False,
    ),
    RowSpec("mnp-big-cidr", f"as mnp-big, client via CIDR {CLIENT_CIDR}", render_mnp(BIG, CLIENT_CIDR)),
    RowSpec(
        "linear-1k",
        "1,000 rules `ip saddr X accept` after ct",
        lambda _n: rulesets.linear_script(999, CLIENT_IP),
        bulk=False,
    ),
    RowSpec(
        "linear-10k",
        "10,000 rules `ip saddr X accept` after ct",
        lambda _n: rulesets.linear_script(9_999, CLIENT_IP),
    ),
)


# --- topology and tables (the seams to mnp.local and mnp.nft) --------------------------------------


@contextlib.contextmanager
def open_pods(prefix: str) -> Iterator[tuple[Pod, Pod, Pod, str]]:
    """Client pod on node 1, srv and ref on node 2, each with net1 on one macvlan network (real CNI)."""
    from mnp.local.nodes.fabric import Attachment, Fabric

    with Fabric(prefix, nodes=2) as fabric:
        pods = []
        for name, node, ip in (("cli", 1, CLIENT_IP), ("srv", 2, SERVER_IP), ("ref", 2, REF_IP)):
            att = Attachment(network=rulesets.NETWORK, ifname=rulesets.IFNAME, addresses=(f"{ip}/24",))
            net = fabric.add_pod(name, node, [att])
            pods.append(
                Pod(
                    name,
                    net.netns_path,
                    rulesets.IFNAME,
                    ip,
                    traffic.link_mac(net.netns_path, rulesets.IFNAME),
                )
            )
        yield pods[0], pods[1], pods[2], "node-2"


class Tables:
    """Loads and removes nft tables in one pod netns through mnp's own applier."""

    def __init__(self, netns: str) -> None:
        from mnp.nft.apply import NetnsNft

        self._nft = NetnsNft(netns)
        self._loaded: str | None = None

    def load(self, script: str) -> float:
        name = re.search(r"^\s*(?:add\s+)?table\s+inet\s+(\S+)", script, re.M)
        if not name:
            raise ValueError("no `table inet NAME` in the script")
        started = time.perf_counter()
        self._nft.apply(script)
        elapsed = (time.perf_counter() - started) * 1000
        self._loaded = name.group(1).rstrip("{").strip()
        return elapsed

    def unload(self) -> None:
        if self._loaded:
            self._nft.delete_table(self._loaded)
            self._loaded = None

    def close(self) -> None:
        """Free the nft context: it pins the netns, which would outlive the fabric otherwise."""
        self._nft.close()


# --- the measurement -------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, cli: Pod, srv: Pod, ref: Pod, procs: Procs, tables: Tables, workdir: Path, s: Settings
    ):
        self.cli, self.srv, self.ref = cli, srv, ref
        self.procs, self.tables, self.workdir, self.s = procs, tables, workdir, s
        self.sinks: dict[str, int] = {}
        ksoftirqd = traffic.ksoftirqd(traffic.TRAFGEN_CPU)
        self.softirqd = [ksoftirqd] if ksoftirqd else []

    def setup(self) -> None:
        for pod in (self.srv, self.ref):
            traffic.add_anyip(pod)
            # At 150k+ new flows/s the global nf_conntrack_max (262,144) fills within 2 s at the default
            # 30 s timeout; 1 s (per netns) plus a flush before each sample keeps it far from full.
            traffic.set_udp_timeout(pod, 1)
            self.sinks[pod.name] = traffic.start_sink(self.procs, pod, rulesets.PROBE_UDP_PORT).pid
            traffic.start_iperf_server(self.procs, pod, rulesets.IPERF_PORT)
            for new in (False, True):
                cfg = self._config(pod, new)
                cfg.write_text(traffic.trafgen_config(self.cli, pod, rulesets.PROBE_UDP_PORT, new))
        traffic.run(self.cli.netns, ["ip", "addr", "add", f"{DENIED_IP}/24", "dev", self.cli.ifname])
        time.sleep(0.5)
        for pod in (self.srv, self.ref):
            for source in (None, DENIED_IP):
                if not traffic.probe_exchange(self.cli, pod, rulesets.PROBE_UDP_PORT, source=source):
                    raise RuntimeError(f"no UDP echo from {pod.name} ({pod.ip}) without any table")

    def enforces(self) -> bool:
        """Whether the table now in srv drops the probe from an address it does not allow."""
        port = rulesets.PROBE_UDP_PORT
        return not traffic.probe_exchange(self.cli, self.srv, port, tries=2, source=DENIED_IP)

    def _config(self, pod: Pod, new: bool) -> Path:
        return self.workdir / f"trafgen-{pod.name}-{'new' if new else 'est'}.cfg"

    def run(self, rows: list[RowSpec], node: str) -> list[RowResult]:
        """Every repetition visits every row, so all rows see the same drift of the machine."""
        scripts = {r.name: r.script(node) if r.script else None for r in rows}
        results = {r.name: RowResult(r.name, r.description) for r in rows}
        for r in rows:
            script = scripts[r.name]
            results[r.name].ct = bool(script and re.search(r"\bct state\b", script))
            results[r.name].script_bytes = len(script or "")
        loads: dict[str, list[float]] = {r.name: [] for r in rows}
        total = max(self.s.reps, self.s.bulk_reps)
        for rep in range(total):
            for i, r in enumerate(rows):
                res = results[r.name]
                script = scripts[r.name]
                if script:
                    loads[r.name].append(self.tables.load(script))
                    if rep == 0 and not self.enforces():
                        res.flags.append(f"{DENIED_IP} got through: the table does not enforce")
                    time.sleep(SETTLE_S)
                try:
                    srv_first = (rep + i) % 2 == 0
                    if rep < self.s.reps:
                        res.established.append(self.pps_pair(False, srv_first, res.ct))
                        res.new_flows.append(self.pps_pair(True, not srv_first, res.ct))
                    if rep < self.s.bulk_reps and r.bulk:
                        res.bulk.append(self.bulk_pair(srv_first))
                finally:
                    self.tables.unload()
                est, new = report.fmt_ratio(res.established[-1:]), report.fmt_ratio(res.new_flows[-1:])
                progress(f"rep {rep + 1}/{total} {r.name}: est {est}, new {new}")
        for r in rows:
            if loads[r.name]:
                results[r.name].load_ms = sorted(loads[r.name])[len(loads[r.name]) // 2]
        return [results[r.name] for r in rows]

    def pps_pair(self, new_flows: bool, srv_first: bool, ct: bool) -> Pair:
        order = (self.srv, self.ref) if srv_first else (self.ref, self.srv)
        rates: dict[str, Rate] = {}
        flags: list[str] = []
        for pod in order:
            rates[pod.name], f = self.pps_sample(pod, new_flows, ct and pod is self.srv)
            flags += [f"{pod.name}: {x}" for x in f]
        return Pair.of(rates["srv"], rates["ref"], flags)

    def pps_sample(self, pod: Pod, new_flows: bool, ct: bool) -> tuple[Rate, list[str]]:
        """Delivered packets per second into `pod` while trafgen blasts it: best sub-window and mean."""
        flags: list[str] = []
        traffic.conntrack_flush(pod)
        if not new_flows:
            if not traffic.probe_exchange(self.cli, pod, rulesets.PROBE_UDP_PORT):
                flags.append("probe exchange failed")
            if ct and (state := traffic.conntrack_probe_state(pod, rulesets.PROBE_UDP_PORT)) != "established":
                flags.append(f"probe flow {state} in conntrack")
        before = traffic.conntrack_stats(pod) if ct else {}
        sink = self.sinks[pod.name]
        tg = traffic.start_trafgen(
            self.procs, self.cli, self._config(pod, new_flows), self.workdir / "trafgen.log", self.s.nice
        )
        try:
            if not wait_flowing(sink, tg):
                flags.append("no packets delivered")
            time.sleep(self.s.warmup_s)
            pipeline = [*traffic.trafgen_workers(tg.pid), *self.softirqd]
            c0, t0, cpu0 = traffic.in_delivers(sink), time.monotonic(), traffic.cpu_ns(pipeline)
            c1, t1, subs = c0, t0, []
            while t1 - t0 < self.s.window_s - 0.01:
                time.sleep(min(self.s.sub_s, self.s.window_s - (t1 - t0)))
                c, t = traffic.in_delivers(sink), time.monotonic()
                subs.append((c - c1) / (t - t1))
                c1, t1 = c, t
            cpu1 = traffic.cpu_ns(pipeline)
            if ct and not new_flows:
                state = traffic.conntrack_probe_state(pod, rulesets.PROBE_UDP_PORT)
                if state != "established":
                    flags.append(f"probe flow {state} in conntrack during the sample")
        finally:
            self.procs.stop(tg)
        if ct:
            after = traffic.conntrack_stats(pod)
            flags += [
                f"conntrack {k} +{after.get(k, 0) - before.get(k, 0)}"
                for k in CT_TROUBLE
                if after.get(k, 0) > before.get(k, 0)
            ]
        cpu_s = (cpu1 - cpu0) / 1e9
        share = cpu_s / (t1 - t0)
        return Rate(max(subs), (c1 - c0) / (t1 - t0), (c1 - c0) / cpu_s if cpu_s > 0 else 0.0, share), flags

    def bulk_pair(self, srv_first: bool) -> Pair:
        rates: dict[str, Rate] = {}
        flags = []
        for pod in (self.srv, self.ref) if srv_first else (self.ref, self.srv):
            best, mean = traffic.iperf_gbps(
                self.procs, self.cli, pod, rulesets.IPERF_PORT, self.s.bulk_s, self.workdir / "iperf.log"
            )
            rates[pod.name] = Rate(best, mean)
            if mean <= 0:
                flags.append(f"{pod.name}: iperf3 failed")
        return Pair.of(rates["srv"], rates["ref"], flags)


def wait_flowing(sink_pid: int, tg: subprocess.Popen[bytes], timeout: float = 3.0) -> bool:
    """Wait until packets reach the pod (trafgen takes a moment to set up its ring)."""
    start = traffic.in_delivers(sink_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and tg.poll() is None:
        time.sleep(0.02)
        if traffic.in_delivers(sink_pid) - start > 200:
            return True
    return False


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- entry point -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="one short repetition of everything (checks the harness)"
    )
    p.add_argument("--reps", type=int, help="paired pps samples per row (default 12, quick 1)")
    p.add_argument("--bulk-reps", type=int, help="paired iperf3 samples per row (default 8, quick 1)")
    p.add_argument("--bulk-seconds", type=float, help="iperf3 duration (default 3, quick 1)")
    p.add_argument("--window", type=float, help="pps measuring window in s (default 1.5, quick 1.0)")
    p.add_argument("--rows", help=f"comma list of rows (default all: {','.join(r.name for r in ROWS)})")
    p.add_argument("--nice", type=int, default=0, help="nice value of trafgen (default 0)")
    p.add_argument("--json", type=Path, help="write the raw samples and settings to this file")
    p.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="measure nothing: report the samples of these runs pooled",
    )
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    q = args.quick
    rows = tuple(args.rows.split(",")) if args.rows else tuple(r.name for r in ROWS)
    unknown = set(rows) - {r.name for r in ROWS}
    if unknown:
        raise SystemExit(f"error: unknown rows {sorted(unknown)}")
    return Settings(
        reps=args.reps if args.reps is not None else (1 if q else 12),
        warmup_s=0.2,
        window_s=args.window if args.window is not None else (1.0 if q else 1.5),
        sub_s=SUB_WINDOW_S,
        nice=args.nice,
        bulk_reps=args.bulk_reps if args.bulk_reps is not None else (1 if q else 8),
        bulk_s=args.bulk_seconds if args.bulk_seconds is not None else (1.0 if q else 3.0),
        rows=rows,
    )


def check_host() -> None:
    if os.geteuid() != 0:
        raise SystemExit("error: needs root (network namespaces, nftables, trafgen)")
    missing = [
        t for t in ("trafgen", "iperf3", "conntrack", "nsenter", "taskset", "nft") if not shutil.which(t)
    ]
    if missing:
        raise SystemExit(
            f"error: missing tools {missing}; apt-get install netsniff-ng iperf3 conntrack nftables"
        )
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("error: needs 2 CPUs (trafgen on CPU0, sinks on CPU1)")


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def leftovers(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix + "-")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pool:
        pooled, meta = report.from_json([json.loads(f.read_text()) for f in args.pool])
        print(f"Data plane, pooled runs of {meta['date']} ({', '.join(str(f) for f in args.pool)})\n")
        print(report.markdown(pooled, meta))
        return 0
    s = settings_from(args)
    check_host()
    prefix = f"mnpb-{os.getpid()}"
    rows = [r for r in ROWS if r.name in s.rows]
    started = datetime.datetime.now(datetime.UTC)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    procs = Procs()
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    try:
        with open_pods(prefix) as (cli, srv, ref, node):
            tables = Tables(srv.netns)
            try:
                bench = Bench(cli, srv, ref, procs, tables, workdir, s)
                bench.setup()
                progress(f"topology {prefix}-* up; {len(rows)} rows x {max(s.reps, s.bulk_reps)} reps")
                results = bench.run(rows, node)
            finally:
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
                procs.stop_all()
                tables.close()
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        if left := leftovers(prefix):
            from mnp.local.nodes.fabric import remove_leftovers

            print(f"warning: removing namespaces left behind: {left}", file=sys.stderr)
            remove_leftovers(prefix)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bench/dataplane.py", *(argv if argv is not None else sys.argv[1:])]),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "nft": subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip(),
        "reps": s.reps,
        "bulk_reps": s.bulk_reps,
        "bulk_seconds": s.bulk_s,
        "window_s": s.window_s,
        "sub_window_s": s.sub_s,
        "warmup_s": s.warmup_s,
        "rows": list(s.rows),
    }
    print(f"Data plane, {meta['date']}, `{meta['command']}` (kernel {meta['kernel']}, {meta['nft']})\n")
    print(report.markdown(results, meta))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(results, meta), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
