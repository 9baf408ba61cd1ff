"""End-to-end benchmark: a policy applied → every selected pod's ruleset Applied (issue 7).

A 2-node local cluster brought up as `mnp local up` does it, with mnp installed from crds/ and deploy/
unchanged (the controller Deployment and the agent DaemonSet run as pods). `--pods` pods (split over
the nodes by the scheduler; busybox `sleep`, one static-IPAM macvlan address) are started and waited
Running. Then one MultiNetworkPolicy selecting all of them (ingress from the same pods on TCP 8080)
is created, and each pod is timed from the policy's create being sent to the first event of a watch
on the rulesets (stamped on arrival) in which its PodNetworkRuleset carries the policy's port (the
controller wrote it) and to the first in which it is also Applied at its generation (the agent applied
it). Then the policy is edited (port 8080 → 8081) and timed the same way. Each window opens once the
machine is quiet (under a quarter of a CPU busy over half a second). Prints a markdown table of the
latencies and one of the CPU seconds each kind of process spent in each window (bench/cpu_share.py).

    .venv/bin/python bench/policy_e2e.py [--pods 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mnp.kube.client import Client, PatchType
from mnp.kube.resources import MNPS, NADS, PODS, RULESETS
from mnp.kube.watch import Informer, WatchEvent
from mnp.local.cluster import down, up
from mnp.local.layout import Layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))
from mnp_e2e import nad  # noqa: E402  (the tests' macvlan NAD with static IPAM)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_share  # noqa: E402

NAD = nad("lan")



def _pod(i: int) -> dict[str, Any]:
    address = f"10.{50 + i // 250}.{i % 250}.10/8"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": "default",
            "labels": {"app": "bench"},
            "annotations": {"k8s.v1.cni.cncf.io/networks": json.dumps([{"name": "lan", "ips": [address]}])},
        },
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "command": ["sleep", "infinity"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ]
        },
    }


def _policy(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {
            "name": "all",
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "lan"},
        },
        "spec": {
            "podSelector": {"matchLabels": {"app": "bench"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "bench"}}}], "ports": [{"port": port}]}
            ],
        },
    }


class Timeline:
    """What a watch on the rulesets saw, stamped on arrival: when each ruleset first carried the port
    (the controller's write) and when it was first Applied with it (the agent's status)."""

    def __init__(self) -> None:
        self.since = 0.0
        self.port = 0
        self.written: dict[str, float] = {}
        self.applied: dict[str, float] = {}

    def expect(self, port: int) -> None:
        self.since, self.port = time.monotonic(), port
        self.written, self.applied = {}, {}

    async def on_event(self, event: WatchEvent) -> None:
        if not self.port or event.type == "DELETED":
            return
        now, name = time.monotonic() - self.since, str(event.obj["metadata"]["name"])
        if _has_port(event.obj, self.port):
            self.written.setdefault(name, now)
            if _applied(event.obj, self.port):
                self.applied.setdefault(name, now)


def _has_port(ruleset: dict[str, Any], port: int) -> bool:
    rules = ((ruleset.get("spec") or {}).get("ingress") or {}).get("rules") or []
    return any(p.get("port") == port for r in rules for p in r.get("ports") or [])


def _applied(ruleset: dict[str, Any], port: int) -> bool:
    status = ruleset.get("status") or {}
    if status.get("observedGeneration") != ruleset["metadata"].get("generation"):
        return False
    if not _has_port(ruleset, port):
        return False
    return any(
        c.get("type") == "Applied" and c.get("status") == "True" for c in status.get("conditions") or []
    )


async def _until_applied(timeline: Timeline, pods: int) -> tuple[list[float], list[float]]:
    deadline = time.monotonic() + 300
    while len(timeline.applied) < pods:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(timeline.applied)} of {pods} rulesets Applied after 300 s")
        await asyncio.sleep(0.05)
    return sorted(timeline.written.values()), sorted(timeline.applied.values())


Rows = list[tuple[str, list[float]]]
CpuRows = list[tuple[str, dict[str, float]]]


async def _measure(layout: Layout, pods: int) -> tuple[Rows, CpuRows]:
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        await client.create(NADS, NAD)
        sem = asyncio.Semaphore(20)

        async def create(i: int) -> None:
            async with sem:
                await client.create(PODS, _pod(i))

        await asyncio.gather(*(create(i) for i in range(pods)))
        deadline = time.monotonic() + 600
        while True:
            items = (await client.list(PODS, "default")).items
            if sum(1 for p in items if (p.get("status") or {}).get("phase") == "Running") == pods:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pods did not all start")
            await asyncio.sleep(0.5)
        timeline = Timeline()
        informer = Informer(client, RULESETS, namespace="default")
        informer.add_handler(timeline.on_event)
        watching = asyncio.create_task(informer.run())
        try:
            await informer.synced.wait()
            # Each window opens on a quiet machine: the pods' start-up work, and a previous cluster's
            # teardown (kernel threads freeing hundreds of namespaces), would otherwise be measured too.
            await cpu_share.settled()
            timeline.expect(8080)
            with cpu_share.measured() as cpu_created:
                await client.create(MNPS, _policy(8080))
                created = await _until_applied(timeline, pods)
            await cpu_share.settled()
            timeline.expect(8081)
            with cpu_share.measured() as cpu_edited:
                await client.patch(MNPS, "all", _policy(8081), "default", type=PatchType.MERGE)
                edited = await _until_applied(timeline, pods)
        finally:
            watching.cancel()
        rows = [
            ("policy created: ruleset written (controller)", created[0]),
            ("policy created: ruleset Applied (end to end)", created[1]),
            ("policy edited (port 8080 → 8081): ruleset written", edited[0]),
            ("policy edited (port 8080 → 8081): ruleset Applied (end to end)", edited[1]),
        ]
        return rows, [("policy created", cpu_created), ("policy edited", cpu_edited)]


def run(pods: int) -> tuple[Rows, CpuRows]:
    """A fresh 2-node cluster with mnp deployed, `pods` pods, the two measurements; torn down after."""
    root = Path(tempfile.mkdtemp(prefix="mnpe-", dir="/tmp"))
    layout = Layout.at(root)
    try:
        up(layout, 2, deploy=True)
        return asyncio.run(_measure(layout, pods))
    except RuntimeError:
        for log in sorted(root.glob("n/*/pods/mnp-system_*/*/*.log")):  # what mnp itself said
            print(
                f"== {log.relative_to(root)}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-8:])
            )
        raise
    finally:
        down(layout)
        shutil.rmtree(root, ignore_errors=True)


def p99(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]


def cpu_table(pods: int, rows: CpuRows) -> str:
    """CPU seconds per kind of process over each window (policy write → last ruleset Applied)."""
    groups = [g for g in cpu_share.GROUPS if any(cpu[g] >= 0.005 for _, cpu in rows)]
    lines = [
        f"| {pods} pods: CPU s in the window | " + " | ".join(groups) + " | all |",
        "|---|" + "---:|" * (len(groups) + 1),
    ]
    for what, cpu in rows:
        cells = " | ".join(f"{cpu[g]:.2f}" for g in groups)
        lines.append(f"| {what} | {cells} | {sum(cpu.values()):.2f} |")
    return "\n".join(lines)


def table(pods: int, rows: Rows) -> str:
    lines = [
        f"| {pods} pods, 2 nodes: from the policy write | p50 s | p99 s | max s |",
        "|---|---:|---:|---:|",
    ]
    for what, times in rows:
        lines.append(f"| {what} | {statistics.median(times):.2f} | {p99(times):.2f} | {max(times):.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    rows, cpu = run(args.pods)
    print(f"load (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(table(args.pods, rows))
    print()
    print(cpu_table(args.pods, cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
