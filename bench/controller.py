"""Benchmark of the controller's compile work and its API writes.

Measures, on a synthetic cluster of pods (20 namespaces, 8 app labels, one or two secondary networks,
named ports) and typical policies (peers by pod selector in their namespace; 30% add an ipBlock with
an except, 10% the `app: api` pods of one other team's namespace; named and ranged ports):
- a full compile (time and peak Python memory, tracemalloc);
- one pod's label change recomputed incrementally (affected policies + recompute), as a ratio to the
  full compile (target ≤ 2%), checked equal to a full compile of the changed cluster;
- API writes of a no-op pass of the real controller against the local API server (target 0).

    .venv/bin/python bench/controller.py [--pods 2000] [--policies 200] [--api-pods 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

from mnp.compiler.affected import affected
from mnp.compiler.compile import CompileOptions
from mnp.compiler.incremental import Compiled
from mnp.controller.controller import Controller, ControllerConfig, Parsed
from mnp.kube.client import Client
from mnp.kube.resources import CRDS, MNPS, NADS, NAMESPACES, PODS
from mnp.kube.watch import EventType, WatchEvent
from mnp.local.apiserver.server import start
from mnp.obs.metrics import ControllerMetrics

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test builders make the synthetic cluster's manifests
from tests.builders import nad, namespace, pod, policy, snapshot  # noqa: E402

OPTIONS = CompileOptions()
APPS = ("web", "api", "db", "cache", "queue", "auth", "search", "batch")


def cluster(pods: int, policies: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    spaces = [f"team-{i}" for i in range(20)]
    objs: list[dict[str, Any]] = [namespace(ns, team=ns, tier=rng.choice(["prod", "dev"])) for ns in spaces]
    objs += [nad("net-a", ns) for ns in spaces] + [nad("net-b", ns) for ns in spaces]
    for i in range(pods):
        ns = spaces[i % len(spaces)]
        a, b = divmod(i, 250)
        nets = {f"{ns}/net-a": ("net1", [f"10.{a}.{b}.10", f"fd00::{i:x}"])}
        if i % 3 == 0:
            nets[f"{ns}/net-b"] = ("net2", [f"10.100.{a}.{b}"])
        labels = {"app": rng.choice(APPS), "version": rng.choice(["v1", "v2"])}
        objs.append(pod(f"p{i}", ns, labels, nets, ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP")]))
    for i in range(policies):
        ns = spaces[i % len(spaces)]
        # Typical policies: peers by pod selector in the policy's namespace, some CIDRs, and now and
        # then the pods of one other team's namespace.
        peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}]
        if rng.random() < 0.3:
            peers.append(
                {"ipBlock": {"cidr": f"172.{16 + i % 16}.0.0/16", "except": [f"172.{16 + i % 16}.1.0/24"]}}
            )
        if rng.random() < 0.1:
            other = rng.choice(spaces)
            peers.append(
                {
                    "namespaceSelector": {"matchLabels": {"team": other}},
                    "podSelector": {"matchLabels": {"app": "api"}},
                }
            )
        spec = {
            "podSelector": {"matchLabels": {"app": rng.choice(APPS)}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers, "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100}]}],
            "egress": [{"to": [peers[0]], "ports": [{"port": "http"}]}],
        }
        objs.append(policy(f"pol{i}", spec, ns, rng.choice(["net-a", "net-a,net-b"])))
    return objs


def compile_figures(pods: int, policies: int, repeat: int, samples: int = 40) -> list[tuple[str, str]]:
    """Times are CPU seconds of this process (time.process_time): the work itself, which wall time on
    a shared 2-core machine inflates by whatever else runs."""
    objs = cluster(pods, policies)
    # The controller's own view: objects parsed one by one as watch events arrive, snapshot from it.
    parsed = Parsed()
    kinds = {"MultiNetworkPolicy": "policy", "Pod": "pod", "Namespace": "namespace"}
    for o in objs:
        parsed.apply(kinds.get(o["kind"], "network"), WatchEvent(EventType.ADDED, o))
    snap = parsed.snapshot()
    fulls = []
    for _ in range(repeat):
        t0 = time.process_time()
        state = Compiled.full(snap, OPTIONS)
        fulls.append(time.process_time() - t0)
    tracemalloc.start()
    Compiled.full(snap, OPTIONS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # One pod's label change, then what the controller does with its watch event: parse it, take the
    # snapshot, find the affected policies, recompute incrementally.
    incs = []
    rng = random.Random(2)
    for _ in range(samples):
        index = rng.randrange(len(objs))
        while objs[index]["kind"] != "Pod":
            index = rng.randrange(len(objs))
        old = objs[index]
        new = {**old, "metadata": {**old["metadata"], "labels": {"app": rng.choice(APPS), "version": "v3"}}}
        objs[index] = new
        t0 = time.process_time()
        change = parsed.apply("pod", WatchEvent(EventType.MODIFIED, new, old))
        after = parsed.snapshot()
        touched, peers_changed = affected(parsed.policies.values(), [change], parsed.namespace_labels())
        state.update(after, OPTIONS, touched, [change.new.ref], peers_changed)  # type: ignore[union-attr]
        incs.append(time.process_time() - t0)
    assert state.result().rulesets == Compiled.full(snapshot(objs), OPTIONS).result().rulesets
    full, inc = statistics.median(fulls), statistics.median(incs)
    fastest = min(fulls)
    p90 = sorted(incs)[int(0.9 * (len(incs) - 1))]
    return [
        (
            f"full compile, {pods} pods × {policies} policies ({len(state.rulesets)} rulesets): "
            f"median / fastest of {len(fulls)}",
            f"{full * 1000:,.0f} / {fastest * 1000:,.0f} ms",
        ),
        ("peak Python memory of a full compile (tracemalloc)", f"{peak / 2**20:,.0f} MiB"),
        (
            f"one pod label change, incremental: median / p90 of {len(incs)} random pods",
            f"{inc * 1000:,.1f} / {p90 * 1000:,.1f} ms",
        ),
        (
            "incremental / full, median",
            f"{inc / full:.2%} (target ≤ 2%: {'met' if inc / full <= 0.02 else 'NOT met'})",
        ),
        ("incremental / full, p90", f"{p90 / full:.2%}"),
        ("incremental median / fastest full compile (one without a collector pause)", f"{inc / fastest:.2%}"),
    ]


async def api_writes(pods: int) -> list[tuple[str, str]]:
    """A real controller against the local API server: writes of the first pass, then of a no-op pass."""
    objs = cluster(pods, max(10, pods // 10), seed=3)
    with tempfile.TemporaryDirectory() as d:
        server = start(Path(d))
        try:
            async with await Client.from_kubeconfig(Path(d) / "kubeconfig") as client:
                for path in (REPO / "crds").glob("*.yaml"):
                    for doc in yaml.safe_load_all(path.read_text()):
                        await client.create(CRDS, doc)
                await client.create(
                    CRDS,
                    next(
                        yaml.safe_load_all(
                            (REPO / "mnp/local/manifests/network-attachment-definitions.yaml").read_text()
                        )
                    ),
                )
                await asyncio.sleep(0.5)
                for o in objs:
                    resource = {
                        "Namespace": NAMESPACES,
                        "Pod": PODS,
                        "NetworkAttachmentDefinition": NADS,
                        "MultiNetworkPolicy": MNPS,
                    }[o["kind"]]
                    body = {k: v for k, v in o.items() if k != "status"}
                    created = await client.create(resource, body, o["metadata"].get("namespace"))
                    if o["kind"] == "Pod":
                        await client.patch_status(
                            PODS,
                            created["metadata"]["name"],
                            {"status": o["status"]},
                            created["metadata"]["namespace"],
                        )
                controller = Controller(client, ControllerConfig(OPTIONS), ControllerMetrics())
                task = asyncio.create_task(controller.run())
                await asyncio.wait_for(controller.ready.wait(), 120)
                while len(controller.rulesets.items()) < len(
                    controller.result.rulesets if controller.result else ()
                ):
                    await asyncio.sleep(0.1)
                first = len(controller.rulesets.items())
                controller._full_needed = True
                noop = await controller.reconcile()
                task.cancel()
        finally:
            server.stop()
    return [
        (f"first pass against the local API server ({pods} pods)", f"{first} rulesets created"),
        (
            "no-op full pass after it",
            f"{len(noop)} API writes (target 0: {'met' if not noop else 'NOT met'})",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--api-pods", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = compile_figures(args.pods, args.policies, args.repeat)
    rows += asyncio.run(api_writes(args.api_pods))
    print("| measurement | value |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
