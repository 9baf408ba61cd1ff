"""Benchmark of the local cluster (`mnp local up/down`, pod start), run as users run it.

Measures: wall time of `up` (until every Node is Ready) and of `down`, for 2 and 4 nodes; time from
creating a pod to seeing it Running with its secondary network in its network-status, p50/p99, for
a burst of pods created at once (half on a static-IPAM macvlan network, half on host-local), spread
over the nodes by the scheduler. Prints a markdown table (bench/README.md).

    .venv/bin/python bench/local_cluster.py [--pods 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mnp.kube.client import Client
from mnp.kube.resources import NADS, PODS
from mnp.local.cluster import down, up
from mnp.local.layout import Layout

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


def _nad(name: str, ipam: dict[str, Any]) -> dict[str, Any]:
    config = {"cniVersion": "0.4.0", "type": "macvlan", "mode": "bridge", "master": "eth0", "ipam": ipam}
    if ipam["type"] == "static":
        config["capabilities"] = {"ips": True}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": json.dumps(config)},
    }


def _pod(i: int) -> dict[str, Any]:
    networks = json.dumps([{"name": "static", "ips": [f"192.0.2.{10 + i}/24"]}]) if i % 2 else "hostlocal"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
    }


def _running_with_network(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (
        status.get("phase") == "Running"
        and NETWORK_STATUS in annotations
        and len(json.loads(annotations[NETWORK_STATUS])) == 2
    )


async def _pod_starts(layout: Layout, count: int) -> list[float]:
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        await client.create(NADS, _nad("static", {"type": "static"}))
        shared = layout.root / "ipam-shared"
        await client.create(
            NADS,
            _nad("hostlocal", {"type": "host-local", "dataDir": str(shared), "subnet": "198.51.100.0/24"}),
        )
        created: dict[str, float] = {}

        async def create(i: int) -> None:
            await client.create(PODS, _pod(i))
            created[f"p{i}"] = time.monotonic()

        await asyncio.gather(*(create(i) for i in range(count)))
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {count} pods running after 300s")
            for pod in (await client.list(PODS, "default")).items:
                name = pod["metadata"]["name"]
                if name not in seen and _running_with_network(pod):
                    seen[name] = time.monotonic()
            await asyncio.sleep(0.05)
        return sorted(seen[n] - created[n] for n in seen)


def _timed_up_down(nodes: int, pods: int) -> tuple[float, float, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="mnpb-", dir="/tmp"))
    layout = Layout.at(root)
    try:
        t0 = time.monotonic()
        up(layout, nodes)
        t_up = time.monotonic() - t0
        starts = asyncio.run(_pod_starts(layout, pods)) if pods else []
        t0 = time.monotonic()
        down(layout)
        t_down = time.monotonic() - t0
        return t_up, t_down, starts
    finally:
        down(layout)
        shutil.rmtree(root, ignore_errors=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for nodes in (2, 4):
        ups, downs = [], []
        for _ in range(args.repeat):
            t_up, t_down, _ = _timed_up_down(nodes, 0)
            ups.append(t_up)
            downs.append(t_down)
        rows.append((f"`up`, {nodes} nodes (until Nodes Ready)", statistics.median(ups), max(ups)))
        rows.append((f"`down`, {nodes} nodes, no pods", statistics.median(downs), max(downs)))
    t_up, t_down, starts = _timed_up_down(2, args.pods)
    print("| measurement | median s | max s |\n|---|---|---|")
    for what, med, worst in rows:
        print(f"| {what} | {med:.2f} | {worst:.2f} |")
    print(f"| `down`, 2 nodes, {args.pods} pods | {t_down:.2f} | – |")
    print()
    print(f"| pod start → Running with its network, {args.pods} pods at once | p50 s | p99 s | max s |")
    print("|---|---|---|---|")
    print(f"| burst of {args.pods} | {_pct(starts, 50):.2f} | {_pct(starts, 99):.2f} | {max(starts):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
