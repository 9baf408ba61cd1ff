"""Helpers for end-to-end tests of mnp on the local cluster (imported as `mnp_e2e`): pods with socat
listeners on static addresses, `mnp agent` / `mnp controller` processes, `mnp local wait`, and real
TCP/UDP flows between pods checked in parallel.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_cluster import LocalCluster

from mnp.local.layout import Layout

POLICY_FOR = "k8s.v1.cni.cncf.io/policy-for"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
PORTS = (8080, 9090)  # every pod listens on TCP 8080 and on TCP + UDP 9090, IPv4 and IPv6


def nad(name: str, namespace: str = "default") -> dict[str, Any]:
    """A macvlan NetworkAttachmentDefinition on the node uplink with static IPAM (pods pick addresses)."""
    config = {
        "cniVersion": "0.4.0",
        "type": "macvlan",
        "mode": "bridge",
        "master": "eth0",
        "capabilities": {"ips": True},
        "ipam": {"type": "static"},
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": json.dumps(config)},
    }


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}


@dataclass(frozen=True)
class PodSpec:
    """A test pod: where it runs, its labels and its static addresses per network (`ns/nad` or `nad`)."""

    name: str
    node: str
    networks: dict[str, list[str]]  # network -> addresses (no prefix length)
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def address(self, network: str, family: int = 4) -> str:
        """The pod's address on `network` (`nad` also finds `ns/nad`) of IP `family`."""
        addresses = next(v for k, v in self.networks.items() if network in (k, k.rpartition("/")[2]))
        return next(a for a in addresses if (":" in a) == (family == 6))

    def manifest(self) -> dict[str, Any]:
        networks = []
        for net, addresses in self.networks.items():
            ns, _, name = net.rpartition("/")
            entry: dict[str, Any] = {"name": name}
            if ns:
                entry["namespace"] = ns
            entry["ips"] = [f"{a}/64" if ":" in a else f"{a}/24" for a in addresses]
            networks.append(entry)
        listeners = {
            "tcp8080": "TCP6-LISTEN:8080,ipv6only=0,fork,reuseaddr",
            "tcp9090": "TCP6-LISTEN:9090,ipv6only=0,fork,reuseaddr",
            "udp9090": "UDP6-RECVFROM:9090,ipv6only=0,fork",
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app": self.name, **self.labels},
                "annotations": {NETWORKS: json.dumps(networks)},
            },
            "spec": {
                "nodeName": self.node,
                "terminationGracePeriodSeconds": 2,
                # The answer waits for the request to be read: with a bare `echo ok`, socat's write
                # of a UDP datagram into the exited echo fails (EPIPE) and the answer is lost at times.
                "containers": [
                    {
                        "name": n,
                        "image": "socat",
                        "command": ["socat", listen, "SYSTEM:read -r line; echo ok"],
                    }
                    for n, listen in listeners.items()
                ],
            },
        }


def policy(
    name: str,
    spec: dict[str, Any],
    networks: str = "lan",
    namespace: str = "default",
) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "annotations": {POLICY_FOR: networks}},
        "spec": spec,
    }


def manifests(*objects: Mapping[str, Any]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objects)


@dataclass(frozen=True)
class Flow:
    """A connection attempt from pod `src` to `dst` (pod name or literal address) on `port`/`proto`."""

    src: str
    dst: str
    port: int = 8080
    proto: str = "tcp"
    family: int = 4
    network: str = "lan"

    def __str__(self) -> str:
        v = "v6 " if self.family == 6 else ""
        return f"{self.src} -> {self.dst} {v}{self.proto}/{self.port} on {self.network}"


def agent_args(layout: Layout, node: str, resync_period: float = 2.0) -> list[str]:
    """`mnp agent` for `node` of the local cluster, as its DaemonSet runs it (after `python -m mnp`)."""
    return [
        "agent",
        "--hostname-override",
        node,
        "--kubeconfig",
        str(layout.kubeconfig),
        "--container-runtime-endpoint",
        f"unix://{layout.node_dir(node) / 'containerd.sock'}",
        "--resync-period",
        f"{resync_period:g}",
    ]


class Processes:
    """`mnp agent` and `mnp controller` processes, each logging to its own file under the cluster dir."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._starts = 0

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        assert name not in self.procs, f"{name} already runs"
        self._starts += 1
        path = self.cluster.layout.root / f"{name}.{self._starts}.log"
        with open(path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mnp", *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.procs[name], self.logs[name] = proc, path
        return proc

    def start_agent(self, node: str) -> None:
        self.start(f"agent-{node}", *agent_args(self.cluster.layout, node))

    def start_controller(
        self, name: str = "controller", *extra: str, resync_period: float = 5.0
    ) -> subprocess.Popen[bytes]:
        return self.start(
            name,
            "controller",
            "--kubeconfig",
            str(self.cluster.layout.kubeconfig),
            "--resync-period",
            f"{resync_period:g}",
            *extra,
        )

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None


class E2E:
    """The cluster as the tests see it: pods by name, their netns, flows, tables, `mnp local wait`."""

    def __init__(self, cluster: LocalCluster, pods: Iterable[PodSpec]) -> None:
        self.cluster = cluster
        self.pods: dict[str, PodSpec] = {}
        self._netns: dict[str, str] = {}
        for p in pods:
            self.add(p)
        self.procs = Processes(cluster)

    def add(self, pod: PodSpec) -> None:
        self.pods[pod.name] = pod
        self._netns.pop(pod.name, None)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return str(self.cluster.kubectl(*args, input=input, check=check).stdout)

    def apply(self, *objects: Mapping[str, Any]) -> None:
        self.cluster.apply(manifests(*objects))

    def json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def wait(self, timeout: float = 60) -> None:
        """`mnp local wait`: policies observed, rulesets applied at their generation, pods running."""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mnp",
                "local",
                "wait",
                "--dir",
                str(self.cluster.layout.root),
                "--timeout",
                str(int(timeout)),
            ],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        assert proc.returncode == 0, f"mnp local wait failed: {proc.stderr}"

    def until(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    # ---- rulesets ----------------------------------------------------------------------------------

    def rulesets(self) -> dict[str, dict[str, Any]]:
        """Every PodNetworkRuleset by `namespace/name`."""
        items = json.loads(self.kubectl("get", "pnr", "-A", "-o", "json"))["items"]
        return {f"{r['metadata']['namespace']}/{r['metadata']['name']}": r for r in items}

    def ruleset_text(self, pod: str) -> str:
        """The spec of `pod`'s ruleset as JSON text ("" when it has none)."""
        r = self.rulesets().get(self.pods[pod].key)
        return json.dumps(r["spec"]) if r else ""

    # ---- pods, netns, tables -----------------------------------------------------------------------

    def netns(self, pod: str) -> str:
        if pod not in self._netns:
            spec = self.pods[pod]
            self._netns[pod] = self.cluster.netns_of(self.cluster.pod(spec.name, spec.namespace))
        return self._netns[pod]

    def has_table(self, pod: str) -> bool:
        out = subprocess.run(
            ["nsenter", f"--net={self.netns(pod)}", "--", "nft", "list", "tables"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return "mnp" in out

    def tables(self, *pods: str) -> dict[str, bool]:
        return {p: self.has_table(p) for p in pods}

    def assert_no_table(self, *pods: str) -> None:
        having = [p for p in pods if self.has_table(p)]
        assert not having, f"pods no policy selects have an mnp table: {having}"

    # ---- flows -------------------------------------------------------------------------------------

    def passes(self, flow: Flow, timeout: float = 1.0) -> bool:
        """Does the listener's answer come back? (TCP: connect + read; UDP: a datagram and its reply)."""
        if flow.dst in self.pods:
            address = self.pods[flow.dst].address(flow.network, flow.family)
        else:
            address = flow.dst
        host = f"[{address}]" if ":" in address else address
        if flow.proto == "tcp":
            target = f"TCP:{host}:{flow.port},connect-timeout={timeout}"
        else:
            target = f"UDP:{host}:{flow.port}"
        proc = subprocess.run(
            ["nsenter", f"--net={self.netns(flow.src)}", "--", "socat", "-T", str(timeout)]
            + ["-t", str(timeout), "-", target],
            input="x\n" if flow.proto == "udp" else "",
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            check=False,
        )
        return proc.stdout.strip() == "ok"

    def flows(self, expected: Mapping[Flow, bool]) -> None:
        """Check every flow (in parallel) against its expected outcome; one assertion naming all misses.

        An allowed flow that fails is tried again with a longer timeout (a slow start is not a
        deny); a denied flow that passes is a failure at once.
        """
        for flow in expected:
            self.netns(flow.src)

        def run(flow: Flow) -> bool:
            got = self.passes(flow)
            if not got and expected[flow]:
                got = self.passes(flow, timeout=3.0)
            return got

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = dict(zip(expected, pool.map(run, expected), strict=True))
        wrong = [
            f"{f}: {'passes' if got else 'blocked'}, expected {'pass' if expected[f] else 'block'}"
            for f, got in results.items()
            if got != expected[f]
        ]
        assert not wrong, "flows not as expected:\n  " + "\n  ".join(wrong)


__all__ = ["E2E", "Flow", "PodSpec", "Processes", "agent_args", "manifests", "nad", "namespace", "policy"]
