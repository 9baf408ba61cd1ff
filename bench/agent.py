"""Benchmark of the node agent (issue 6) on a 2-node local cluster, one `mnp agent` process per node.

Agents are started as tests/kernel/test_agent.py starts them (`python -m mnp agent
--hostname-override NODE --kubeconfig ... --container-runtime-endpoint unix://.../containerd.sock
--health-address ...`), with `--resync-period 60`. Pods are busybox `sleep 3600` with one static-IPAM
macvlan address on network `lan` (net1), pinned to their node, all Running before any ruleset is
written. Rulesets are built from the live pods (uid, node, net1 address from the network-status
annotation) with `mnp.api.ruleset.ruleset_object`: ingress isolated on net1, one rule allowing the
/32 of every other pod on TCP 8080 (what one MultiNetworkPolicy `from: [podSelector: {}]` on port
8080 compiles to, minus the pod itself).

1. Latency: the rulesets of `--pods-per-node` × 2 pods are created at once (concurrent POSTs); each
   is timed from its create's return to the first watch event in which its status has
   observedGeneration == its generation and condition Applied=True (a watch in its own thread and
   event loop, timestamps taken on arrival). Then every ruleset is updated at once (JSON patch of the
   port 8080 → 8081) and timed the same way from the patch's return; then one peer is added to every
   ruleset at once (what a new pod matching the policy does: the agent changes map elements only).
   Rate = rulesets / (time from the first request sent to the last Applied) / 2 nodes.
2. Idle: more pods up to `--idle-pods-per-node` per node (as many as run within `--pod-budget` s;
   the rest are deleted), every pod's ruleset written for the whole set of pods and waited Applied;
   then each agent's /proc/PID/stat utime+stime and /proc/PID/status VmRSS are sampled every second
   for `--idle-seconds` (60 s = one resync period, so one drift check of every table falls in it).

Prints markdown tables (bench/README.md, "Agent (issue 6)"); `--json FILE` keeps the raw numbers.

    .venv/bin/python bench/agent.py [--pods-per-node 100] [--idle-pods-per-node 250]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnp.api.ruleset import (
    DirectionRules,
    Interface,
    Peer,
    PodRef,
    PortSpec,
    Protocol,
    Rule,
    RulesetSpec,
    ruleset_object,
)
from mnp.kube.client import Client, PatchType
from mnp.kube.errors import AlreadyExists, KubeNotFound
from mnp.kube.resources import CRDS, NADS, PODS, RULESETS
from mnp.kube.watch import Informer, WatchEvent
from mnp.local.cluster import down, up
from mnp.local.layout import Layout

REPO = Path(__file__).resolve().parents[1]
NODES = ("node-1", "node-2")
NAMESPACE = "default"
NETWORK = "lan"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
POLICY = f"{NAMESPACE}/bench"
PORT, PORT_UPDATED = 8080, 8081
WAIT_APPLIED_S = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, str(REPO / "tests" / "kernel"))
from mnp_e2e import agent_args, nad  # noqa: E402  (the tests' agent command and macvlan NAD)

sys.path.insert(0, str(REPO / "bench"))
import cpu_share  # noqa: E402

NAD = nad(NETWORK, NAMESPACE)



def address(index: int) -> str:
    return f"10.77.{index // 250}.{index % 250 + 1}"


def pod_name(node: str, index: int) -> str:
    return f"{node}-p{index:03d}"


def pod_manifest(name: str, node: str, addr: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "bench"},
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": json.dumps([{"name": NETWORK, "ips": [f"{addr}/16"]}])
            },
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


@dataclass(frozen=True)
class LivePod:
    name: str
    uid: str
    node: str
    interface: str
    network: str
    ip: str


def live_pod(pod: dict[str, Any]) -> LivePod | None:
    """The pod if Running with its `lan` address in its network-status, else None."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("phase") != "Running":
        return None
    try:
        entries = json.loads((meta.get("annotations") or {}).get(NETWORK_STATUS, "[]"))
    except ValueError:
        return None
    for entry in entries:
        if str(entry.get("name", "")).split("/")[-1] == NETWORK and entry.get("ips"):
            return LivePod(
                meta["name"],
                meta["uid"],
                pod["spec"]["nodeName"],
                str(entry.get("interface") or "net1"),
                f"{NAMESPACE}/{NETWORK}",
                str(entry["ips"][0]),
            )
    return None


def ruleset_for(pod: LivePod, everyone: Iterable[LivePod], port: int) -> dict[str, Any]:
    peers = tuple(
        sorted(
            (
                Peer(ipaddress.ip_network(f"{p.ip}/32"), pod=f"{NAMESPACE}/{p.name}")
                for p in everyone
                if p.name != pod.name
            ),
            key=Peer.sort_key,
        )
    )
    rule = Rule(POLICY, 0, pod.interface, peers, (PortSpec(Protocol.TCP, port),))
    spec = RulesetSpec(
        pod_uid=pod.uid,
        node=pod.node,
        policies=(POLICY,),
        interfaces=(Interface(pod.interface, pod.network, (ipaddress.ip_address(pod.ip),)),),
        ingress=DirectionRules(isolated=(pod.interface,), rules=(rule,)),
    )
    return ruleset_object(PodRef(NAMESPACE, pod.name, pod.uid), spec)


# ---- agents ---------------------------------------------------------------------------------------


class Agents:
    """`mnp agent` processes, one per node, started as tests/kernel/test_agent.py starts them."""

    def __init__(self, layout: Layout, resync_period: float) -> None:
        self.layout = layout
        self.resync_period = resync_period
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, node: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ports[node] = s.getsockname()[1]
        log = open(self.layout.root / f"agent-{node}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[node] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnp",
                *agent_args(self.layout, node, self.resync_period),
                "--health-address",
                f"127.0.0.1:{self.ports[node]}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def ready(self, node: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[node]}/readyz", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.procs:
            while not self.ready(node):
                if self.procs[node].poll() is not None:
                    raise RuntimeError(f"agent on {node} exited: {self.log_tail(node)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agent on {node} not ready after {timeout:.0f}s")
                time.sleep(0.1)

    def log_tail(self, node: str, lines: int = 20) -> str:
        text = (self.layout.root / f"agent-{node}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for node, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
            del self.procs[node]


# ---- status watch ---------------------------------------------------------------------------------


def applied_generation(obj: dict[str, Any]) -> int | None:
    """The generation the status reports Applied=True for, if it is the object's current one."""
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    if generation is None or status.get("observedGeneration") != generation:
        return None
    for c in status.get("conditions") or []:
        if c.get("type") == "Applied" and c.get("status") == "True":
            return int(generation)
    return None


class StatusWatch:
    """Watches the rulesets in a thread of its own; notes when each (name, generation) is first Applied."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.first_applied: dict[tuple[str, int], float] = {}
        self.synced = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        if not self.synced.wait(60):
            raise RuntimeError(f"status watch did not sync: {self.error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by whoever waits on it
            self.error = e

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with await Client.from_kubeconfig(self.kubeconfig) as client:
            informer = Informer(client, RULESETS, namespace=NAMESPACE)
            informer.add_handler(self._on_event)
            self._task = asyncio.create_task(informer.run())
            synced = asyncio.create_task(informer.synced.wait())
            synced.add_done_callback(lambda _: self.synced.set())
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _on_event(self, event: WatchEvent) -> None:
        now = time.monotonic()
        generation = applied_generation(event.obj)
        if generation is not None:
            self.first_applied.setdefault((str(event.obj["metadata"]["name"]), generation), now)


@dataclass
class Burst:
    """Writes sent at once: when each returned and the generation it made."""

    started: float = 0.0
    returned: dict[str, float] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return sorted(max(0.0, self.applied[n] - self.returned[n]) for n in self.returned)

    def span(self) -> float:
        return max(self.applied.values()) - self.started

    def span_of(self, names: Iterable[str]) -> float:
        return max(self.applied[n] for n in names) - self.started

    def early(self) -> int:
        """Applied seen before the write's answer arrived (counted as 0 latency)."""
        return sum(1 for n in self.returned if self.applied[n] < self.returned[n])


async def wait_applied(watch: StatusWatch, burst: Burst, timeout: float = WAIT_APPLIED_S) -> None:
    deadline = time.monotonic() + timeout
    pending = set(burst.returned)
    while pending:
        for name in list(pending):
            seen = watch.first_applied.get((name, burst.generation[name]))
            if seen is not None:
                burst.applied[name] = seen
                pending.discard(name)
        if not pending:
            return
        if watch.error is not None:
            raise RuntimeError(f"status watch failed: {watch.error!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(pending)} rulesets not Applied after {timeout:.0f}s: {sorted(pending)[:5]}"
            )
        await asyncio.sleep(0.01)


async def write_all(client: Client, objects: list[dict[str, Any]], write: str, parallel: int = 100) -> Burst:
    """`write` ("create", "patch" or "replace") every object at once (at most `parallel` in flight)."""
    burst = Burst()
    gate = asyncio.Semaphore(parallel)

    async def one(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        async with gate:
            if write == "create":
                answer = await client.create(RULESETS, obj)
            elif write == "patch":
                answer = await client.patch(RULESETS, name, obj["patch"], NAMESPACE, type=PatchType.JSON)
            else:
                current = await client.get(RULESETS, name, NAMESPACE)
                body = {
                    **obj,
                    "metadata": {
                        **obj["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                answer = await client.replace(RULESETS, body)
        burst.returned[name] = time.monotonic()
        burst.generation[name] = int(answer["metadata"]["generation"])

    burst.started = time.monotonic()
    await asyncio.gather(*(one(o) for o in objects))
    return burst


# ---- cluster set-up -------------------------------------------------------------------------------


async def install_crds(client: Client) -> None:
    docs = [d for p in sorted((REPO / "crds").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    for doc in docs:
        with contextlib.suppress(AlreadyExists):
            await client.create(CRDS, doc)
    deadline = time.monotonic() + 60
    for doc in docs:
        while True:
            crd = await client.get(CRDS, doc["metadata"]["name"])
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {doc['metadata']['name']} not Established")
            await asyncio.sleep(0.05)


async def start_pods(
    client: Client, names: dict[str, tuple[str, str]], budget: float
) -> tuple[dict[str, LivePod], float]:
    """Create pods {name: (node, address)} at once; those Running within `budget` s, and the time taken."""
    started = time.monotonic()
    gate = asyncio.Semaphore(50)

    async def create(name: str, node: str, addr: str) -> None:
        async with gate:
            await client.create(PODS, pod_manifest(name, node, addr))

    await asyncio.gather(*(create(n, node, a) for n, (node, a) in names.items()))
    running: dict[str, LivePod] = {}
    while True:
        for pod in (await client.list(PODS, NAMESPACE, label_selector="app=bench")).items:
            live = live_pod(pod)
            if live is not None and live.name in names:
                running[live.name] = live
        if len(running) == len(names) or time.monotonic() - started > budget:
            return running, time.monotonic() - started
        await asyncio.sleep(0.5)


async def all_live_pods(client: Client) -> dict[str, LivePod]:
    out: dict[str, LivePod] = {}
    for pod in (await client.list(PODS, NAMESPACE, label_selector="app=bench")).items:
        live = live_pod(pod)
        if live is not None:
            out[live.name] = live
    return out


# ---- idle sampling --------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def sample_idle(pids: dict[str, int], seconds: float) -> dict[str, dict[str, Any]]:
    start_ticks = {n: cpu_ticks(p) for n, p in pids.items()}
    t0 = time.monotonic()
    rss: dict[str, list[int]] = {n: [] for n in pids}
    per_second: dict[str, list[float]] = {n: [] for n in pids}
    last = dict(start_ticks)
    last_t = t0
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        now = time.monotonic()
        for n, p in pids.items():
            ticks = cpu_ticks(p)
            per_second[n].append((ticks - last[n]) / CLK_TCK / (now - last_t) * 100)
            last[n] = ticks
            rss[n].append(rss_kib(p))
        last_t = now
    elapsed = time.monotonic() - t0
    return {
        n: {
            "cpu_pct": (last[n] - start_ticks[n]) / CLK_TCK / elapsed * 100,
            "cpu_pct_max_1s": max(per_second[n]),
            "seconds_over_1pct": float(sum(1 for x in per_second[n] if x > 1.0)),
            "cpu_pct_other_seconds": _mean([x for x in per_second[n] if x <= 1.0]),
            "per_second_pct": per_second[n],
            "rss_mib": rss[n][-1] / 1024,
            "rss_mib_max": max(rss[n]) / 1024,
            "elapsed_s": elapsed,
        }
        for n in pids
    }


def agent_metrics(port: int) -> dict[str, float]:
    """Apply count and total apply seconds from the agent's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {"applies": 0.0, "apply_seconds": 0.0}
    for line in text.splitlines():
        if line.startswith("mnp_agent_apply_seconds_count "):
            found["applies"] = float(line.split()[1])
        elif line.startswith("mnp_agent_apply_seconds_sum "):
            found["apply_seconds"] = float(line.split()[1])
    return found


def snapshot(agents: Agents) -> dict[str, Any]:
    """Each agent's CPU ticks, RSS and apply counters, with the machine's load, at one moment."""
    nodes = {
        node: {
            "ticks": cpu_ticks(proc.pid),
            "rss_mib": rss_kib(proc.pid) / 1024,
            **agent_metrics(agents.ports[node]),
        }
        for node, proc in agents.procs.items()
    }
    return {"t": time.monotonic(), "load1": os.getloadavg()[0], "nodes": nodes}


def agent_cost(before: dict[str, Any], after: dict[str, Any], count: int) -> dict[str, Any]:
    """Per node between two snapshots: agent CPU s, CPU ms per ruleset, nft applies, mean apply ms, RSS."""
    out: dict[str, Any] = {"load1": [before["load1"], after["load1"]]}
    for node, b in before["nodes"].items():
        a = after["nodes"][node]
        cpu = (a["ticks"] - b["ticks"]) / CLK_TCK
        applies = a["applies"] - b["applies"]
        out[node] = {
            "cpu_s": cpu,
            "cpu_ms_per_ruleset": cpu * 1000 / (count / len(NODES)),
            "applies": applies,
            "apply_ms_mean": (a["apply_seconds"] - b["apply_seconds"]) * 1000 / applies if applies else 0.0,
            "rss_mib": a["rss_mib"],
        }
    return out


# ---- the run --------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def burst_row(what: str, burst: Burst, count: int) -> dict[str, Any]:
    lat = burst.latencies()
    return {
        "what": what,
        "rulesets": count,
        "p50_s": pct(lat, 50),
        "p99_s": pct(lat, 99),
        "max_s": max(lat),
        "all_applied_s": burst.span(),
        "per_s_per_node": count / burst.span() / len(NODES),
        "early": burst.early(),
        "writes_returned_s": max(burst.returned.values()) - burst.started,
    }


async def bench(layout: Layout, agents: Agents, args: argparse.Namespace, out: dict[str, Any]) -> None:
    async with await Client.from_kubeconfig(layout.kubeconfig, request_timeout=120) as client:
        await install_crds(client)
        await client.create(NADS, NAD)

        # Pods of part 1, all Running before anything else.
        first = {
            pod_name(node, i): (node, address(n * 250 + i))
            for n, node in enumerate(NODES)
            for i in range(args.pods_per_node)
        }
        running, took = await start_pods(client, first, budget=max(args.pod_budget, 300))
        if len(running) != len(first):
            raise RuntimeError(f"only {len(running)} of {len(first)} pods Running after {took:.0f}s")
        out["pods_part1_start_s"] = took
        print(f"{len(running)} pods Running in {took:.1f}s", flush=True)

        for node in NODES:
            agents.start(node)
        agents.wait_ready()
        watch = StatusWatch(layout.kubeconfig)
        watch.start()
        try:
            await part1(client, agents, watch, running, out)
            await part2(client, agents, watch, running, args, out)
        finally:
            watch.stop()


async def measure(
    client: Client,
    agents: Agents,
    watch: StatusWatch,
    pods: list[LivePod],
    objects: list[dict[str, Any]],
    write: str,
    what: str,
    out: dict[str, Any],
) -> None:
    """One burst of writes timed to Applied: its row, the agents' cost and the span per node in `out`.
    The burst starts once the machine is quiet (pods' start-up, an earlier burst's echoes settled)."""
    await cpu_share.settled()
    before = snapshot(agents)
    burst = await write_all(client, objects, write)
    await wait_applied(watch, burst)
    out.setdefault("cost", []).append(agent_cost(before, snapshot(agents), len(objects)))
    out.setdefault("latency", []).append(burst_row(what, burst, len(objects)))
    spans = {node: burst.span_of(p.name for p in pods if p.node == node) for node in NODES}
    out.setdefault("per_node_all_applied_s", []).append(spans)
    print(out["latency"][-1], flush=True)


async def part1(
    client: Client, agents: Agents, watch: StatusWatch, pods: dict[str, LivePod], out: dict[str, Any]
) -> None:
    everyone = list(pods.values())
    objects = [ruleset_for(p, everyone, PORT) for p in everyone]
    out["ruleset_json_bytes"] = len(json.dumps(objects[0]))
    out["agents_ready"] = snapshot(agents)
    what = f"create {len(objects)} rulesets at once"
    await measure(client, agents, watch, everyone, objects, "create", what, out)
    await asyncio.sleep(2)
    patch = [{"op": "replace", "path": "/spec/ingress/rules/0/ports/0/port", "value": PORT_UPDATED}]
    patches = [{"metadata": {"name": p.name}, "patch": patch} for p in everyone]
    what = f"update all {len(objects)} at once (port {PORT} → {PORT_UPDATED})"
    await measure(client, agents, watch, everyone, patches, "patch", what, out)
    await asyncio.sleep(2)
    # What a new pod matching the policy does to every ruleset: one more peer (map elements only).
    peer = {"cidr": "10.99.0.1/32", "pod": f"{NAMESPACE}/newcomer"}
    patch = [{"op": "add", "path": "/spec/ingress/rules/0/peers/-", "value": peer}]
    patches = [{"metadata": {"name": p.name}, "patch": patch} for p in everyone]
    what = f"one peer added to all {len(objects)} at once"
    await measure(client, agents, watch, everyone, patches, "patch", what, out)


async def part2(
    client: Client,
    agents: Agents,
    watch: StatusWatch,
    first: dict[str, LivePod],
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    more = {
        pod_name(node, i): (node, address(n * 250 + i))
        for n, node in enumerate(NODES)
        for i in range(args.pods_per_node, args.idle_pods_per_node)
    }
    running, took = await start_pods(client, more, budget=args.pod_budget)
    out["pods_part2"] = {"asked": len(more), "running": len(running), "start_s": took}
    print(f"{len(running)} of {len(more)} more pods Running in {took:.1f}s", flush=True)
    late = sorted(set(more) - set(running))
    for name in late:
        with contextlib.suppress(KubeNotFound):
            await client.delete(PODS, name, NAMESPACE, grace_period_seconds=0)
    # Wait for the deleted ones to go, so the idle window sees no pod churn.
    deadline = time.monotonic() + 120
    while late and time.monotonic() < deadline:
        names = {
            p["metadata"]["name"]
            for p in (await client.list(PODS, NAMESPACE, label_selector="app=bench")).items
        }
        if not names & set(late):
            break
        await asyncio.sleep(0.5)

    pods = await all_live_pods(client)
    everyone = list(pods.values())
    out["idle_pods_per_node"] = {node: sum(1 for p in everyone if p.node == node) for node in NODES}
    fresh = [ruleset_for(p, everyone, PORT) for p in everyone if p.name not in first]
    again = [ruleset_for(p, everyone, PORT) for p in everyone if p.name in first]
    out["ruleset_json_bytes_idle"] = len(json.dumps(fresh[0] if fresh else again[0]))
    before = snapshot(agents)
    t0 = time.monotonic()
    created, replaced = await asyncio.gather(
        write_all(client, fresh, "create"), write_all(client, again, "replace")
    )
    await wait_applied(watch, created)
    await wait_applied(watch, replaced)
    bursts = [b for b in (created, replaced) if b.returned]
    out["idle_all_applied_s"] = max(max(b.applied.values()) for b in bursts) - t0
    out["cost_idle_set"] = agent_cost(before, snapshot(agents), len(everyone))
    print(f"{len(everyone)} rulesets Applied in {out['idle_all_applied_s']:.1f}s", flush=True)

    await asyncio.sleep(args.settle)
    pids = {node: proc.pid for node, proc in agents.procs.items()}
    out["load1_idle_start"] = os.getloadavg()[0]
    out["idle"] = await asyncio.to_thread(sample_idle, pids, args.idle_seconds)
    out["load1_idle_end"] = os.getloadavg()[0]
    out["agent_log"] = {
        node: {
            what: (agents.layout.root / f"agent-{node}.log").read_text(errors="replace").count(what)
            for what in ("table applied", "table repaired", "sync failed", "status not written")
        }
        for node in NODES
    }
    print(out["idle"], flush=True)


def report(out: dict[str, Any]) -> str:
    lines = [
        "| measurement | rulesets | p50 s | p99 s | max s | writes returned s | to all Applied s "
        "| applied/s per node | agent CPU ms per ruleset | mean nft apply ms | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row, cost in zip(out["latency"], out["cost"], strict=True):
        cpu = _mean([cost[n]["cpu_ms_per_ruleset"] for n in NODES])
        apply_ms = _mean([cost[n]["apply_ms_mean"] for n in NODES])
        lines.append(
            f"| {row['what']} | {row['rulesets']} | {row['p50_s']:.3f} | {row['p99_s']:.3f} | "
            f"{row['max_s']:.3f} | {row['writes_returned_s']:.2f} | {row['all_applied_s']:.2f} | "
            f"{row['per_s_per_node']:.1f} | {cpu:.1f} | {apply_ms:.1f} | "
            f"{cost['load1'][0]:.1f} → {cost['load1'][1]:.1f} |"
        )
    per_node = out["latency"][0]["rulesets"] // len(NODES)
    lines += [
        "",
        "| agent | pods = rulesets | idle CPU % of a core (whole window) | seconds > 1% | CPU % in the "
        f"other seconds | max 1 s CPU % | RSS MiB idle | RSS MiB, 0 rulesets | RSS MiB, {per_node} rulesets "
        "|",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for node, s in out["idle"].items():
        lines.append(
            f"| {node} | {out['idle_pods_per_node'][node]} | {s['cpu_pct']:.2f} | "
            f"{s['seconds_over_1pct']:.0f} of {s['elapsed_s']:.0f} | {s['cpu_pct_other_seconds']:.2f} | "
            f"{s['cpu_pct_max_1s']:.1f} | {s['rss_mib']:.1f} | "
            f"{out['agents_ready']['nodes'][node]['rss_mib']:.1f} | "
            f"{out['cost'][-1][node]['rss_mib']:.1f} |"
        )
    p99 = max(r["p99_s"] for r in out["latency"])
    cpu = max(s["cpu_pct"] for s in out["idle"].values())
    lines += [
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        f"| p99 ruleset → Applied ≤ 1 s at {out['latency'][0]['rulesets']} pods | {p99:.3f} s | "
        f"{'✔' if p99 <= 1 else '✘'} |",
        f"| idle CPU < 1% of a core | {cpu:.2f} % | {'✔' if cpu < 1 else '✘'} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods-per-node", type=int, default=100)
    parser.add_argument("--idle-pods-per-node", type=int, default=250)
    parser.add_argument("--pod-budget", type=float, default=180.0, help="seconds for the extra pods to start")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after all Applied before sampling")
    parser.add_argument("--resync-period", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    if args.idle_pods_per_node > 250 or args.pods_per_node > args.idle_pods_per_node:
        parser.error("need pods-per-node <= idle-pods-per-node <= 250")

    out: dict[str, Any] = {
        "load_at_start": os.getloadavg(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    print(f"load at start {out['load_at_start']}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="mnpb-", dir="/tmp"))
    layout = Layout.at(root)
    agents = Agents(layout, args.resync_period)
    t0 = time.monotonic()
    try:
        up(layout, len(NODES))
        asyncio.run(bench(layout, agents, args, out))
    except BaseException:
        for node in list(agents.procs):
            print(f"--- agent {node} log tail ---\n{agents.log_tail(node)}", file=sys.stderr)
        raise
    finally:
        agents.stop()
        down(layout)
        shutil.rmtree(root, ignore_errors=True)
    out["load_at_end"] = os.getloadavg()
    out["total_s"] = time.monotonic() - t0
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print()
    print(report(out))
    print()
    part2 = out["pods_part2"]
    print(
        f"pods: part 1 {args.pods_per_node * len(NODES)} Running in {out['pods_part1_start_s']:.0f}s; "
        f"idle set {out['idle_pods_per_node']} ({part2['running']} of {part2['asked']} extra Running in "
        f"{part2['start_s']:.0f}s); ruleset JSON {out['ruleset_json_bytes']} B (part 1), "
        f"{out['ruleset_json_bytes_idle']} B (idle set); idle-set write to all Applied "
        f"{out['idle_all_applied_s']:.1f}s; load {out['load_at_start']} -> {out['load_at_end']}; "
        f"total {out['total_s']:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
