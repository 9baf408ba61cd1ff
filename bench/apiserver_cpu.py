"""CPU of the local API server per write of large custom resources, against another revision.

What the policy burst does to `mnp local apiserver`: 200 PodNetworkRulesets of 199 peers (~10.8 KB of
JSON each; `--peers` for other sizes) created, then each one's status merge-patched as an agent does,
with 3 watchers (one per node label, one on the namespace). The figure is the server process's
utime+stime (/proc/PID/stat) per write, until every watcher has its events. The machine is shared,
so the revision under test and a baseline (`--baseline DIR`, a checkout of another commit, e.g.
`git worktree add /tmp/apibase <commit>`) run in turns, each round on a fresh server, and the ratio
comes from the sums of the same rounds.

    .venv/bin/python bench/apiserver_cpu.py --baseline /tmp/apibase [--rounds 6] [--rulesets 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from apiserver import CRD, PNR, REPO, Server, Watcher, in_threads

HZ = os.sysconf("SC_CLK_TCK")
NS = "default"
WRITERS = 8  # concurrent client connections, like the controller's bounded writes in flight


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def address(i: int) -> str:
    return f"10.50.{i // 250}.{i % 250 + 10}"


def ruleset(i: int, count: int, peers: int) -> dict[str, Any]:
    """Pod i's ruleset as the controller writes it for a policy allowing ingress from `peers` others."""
    node = f"node-{i % 2 + 1}"
    others = [j for j in range(max(count, peers + 1)) if j != i][:peers]
    allowed = [{"cidr": f"{address(j)}/32", "pod": f"{NS}/p{j}"} for j in others]
    return {
        "apiVersion": "mnp.dev/v1alpha1",
        "kind": "PodNetworkRuleset",
        "metadata": {"name": f"p{i}", "namespace": NS, "labels": {"mnp.dev/node": node}},
        "spec": {
            "podUID": f"4f1c9a3e-2b7d-4e0f-8a6c-{i:012d}",
            "node": node,
            "policies": [f"{NS}/allow-peers"],
            "interfaces": [{"name": "net1", "network": f"{NS}/macvlan1", "ips": [address(i)]}],
            "ingress": {
                "isolated": ["net1"],
                "rules": [
                    {
                        "policy": f"{NS}/allow-peers",
                        "rule": 0,
                        "interface": "net1",
                        "peers": allowed,
                        "ports": [{"protocol": "TCP", "port": 8080}],
                    }
                ],
            },
        },
    }


def applied(i: int, peers: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "observedGeneration": 1,
            "appliedHash": f"{i:064x}",
            "rules": 5,
            "elements": peers,
            "lastApplied": now,
            "conditions": [
                {
                    "type": "Applied",
                    "status": "True",
                    "observedGeneration": 1,
                    "lastTransitionTime": now,
                    "reason": "Applied",
                    "message": "",
                }
            ],
        }
    }


def one_round(repo: Path, count: int, peers: int, others: int = 0) -> tuple[float, float]:
    """(CPU seconds for `count` creates, for `count` status patches), each until every watcher got its
    events."""
    with tempfile.TemporaryDirectory(prefix="mnp-bench-apicpu-") as tmp:
        server = Server(Path(tmp) / "a", repo)
        try:
            c = server.conn()
            c.call(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(CRD.read_text()),
            )
            base = f"{PNR}/namespaces/{NS}/podnetworkrulesets"
            watchers = [
                Watcher(server, f"{PNR}/podnetworkrulesets?watch=true&labelSelector=mnp.dev%2Fnode%3Dnode-1"),
                Watcher(server, f"{PNR}/podnetworkrulesets?watch=true&labelSelector=mnp.dev%2Fnode%3Dnode-2"),
                Watcher(server, f"{base}?watch=true"),
            ]
            # Watchers of other resources, as a cluster's kubelets, controllers and informers have.
            idle = [Watcher(server, f"/api/v1/namespaces/{NS}/configmaps?watch=true") for _ in range(others)]
            time.sleep(0.3)  # the watches have listed (nothing yet) and wait for events
            bodies = [ruleset(i, count, peers) for i in range(count)]
            lock = threading.Lock()
            todo = list(range(count))

            def run(write: Any) -> None:
                conn = server.conn()
                while True:
                    with lock:
                        if not todo:
                            return
                        i = todo.pop()
                    write(conn, i)

            def create(conn: Any, i: int) -> None:
                conn.call("POST", base, bodies[i])

            def patch(conn: Any, i: int) -> None:
                conn.call("PATCH", f"{base}/p{i}/status", applied(i, peers), "application/merge-patch+json")

            spent = []
            for phase, write in enumerate((create, patch), start=1):
                todo[:] = range(count)
                start = cpu_seconds(server.proc.pid)
                in_threads(WRITERS, lambda _n, write=write: run(write))
                deadline = time.monotonic() + 60
                while sum(len(w.seen) for w in watchers) < 2 * count * phase and time.monotonic() < deadline:
                    time.sleep(0.01)
                if sum(len(w.seen) for w in watchers) < 2 * count * phase:
                    raise RuntimeError("watchers missed events")
                spent.append(cpu_seconds(server.proc.pid) - start)
            for w in watchers + idle:
                w.close()
            return spent[0], spent[1]
        finally:
            server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True, help="checkout of the revision to compare with")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--rulesets", type=int, default=200)
    p.add_argument("--peers", type=int, default=199, help="peers per ruleset (199: ~10.8 KB of JSON)")
    p.add_argument("--other-watchers", type=int, default=0, help="watches on configmaps, which see nothing")
    args = p.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": REPO}
    totals = {name: [0.0, 0.0] for name in trees}
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            creates, patches = one_round(trees[name], args.rulesets, args.peers, args.other_watchers)
            totals[name][0] += creates
            totals[name][1] += patches
            print(
                f"round {r + 1} {name}: create {creates / args.rulesets * 1000:.2f} ms, "
                f"status patch {patches / args.rulesets * 1000:.2f} ms",
                file=sys.stderr,
            )
    writes = args.rounds * args.rulesets
    print(f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end; {args.rounds} rounds\n")
    watching = f"3 (+{args.other_watchers} idle) watchers" if args.other_watchers else "3 watchers"
    print(f"| server CPU per write, {args.peers} peers, {watching} | baseline ms | this tree ms | ratio |")
    print("|---|---:|---:|---:|")
    for n, label in enumerate(("create", "status merge patch")):
        old, new = totals["baseline"][n] / writes * 1000, totals["this tree"][n] / writes * 1000
        print(f"| {label} | {old:.2f} | {new:.2f} | {new / old:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
