"""Fault scenarios for mnp deployed from deploy/ (imported as `fault_scenarios`; issue 8).

A `Bed` is a 2-node local cluster brought up like `mnp local up` (controller Deployment with leader
election, agent DaemonSet) with three pods and one policy:

- `srv` on node-1 (static 192.0.2.10 on NAD `lan`), policed: ingress from `app=cli` on TCP 8080 (plus
  unrelated "extra" ports that the scenarios edit);
- `cli`, the one pod of a Deployment on node-2, on NAD `dyn` (host-local IPAM: a re-created pod gets a
  new address);
- `other` on node-2 (static 192.0.2.12 on `lan`), selected by nothing.

A `Prober` runs three flows all the time: cli → srv:8080 (allowed), other → srv:8080 and cli →
srv:9090 (both denied). Each scenario breaks one thing, makes a policy change around it, and returns
`Figures`: what the prober saw in the scenario's window and the times measured. `Figures.problems`
lists every broken promise; the tests assert it is empty, bench/faults.py prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_cluster import LocalCluster
from mnp_e2e import PodSpec, manifests, nad, policy
from prober import ProbeFlow, Prober, describe, failures, longest_gap, passes

from mnp.kube.client import Client, PatchType
from mnp.kube.resources import LEASES, MNPS, RULESETS
from mnp.local.cluster import down, restart_apiserver, restart_containerd, up
from mnp.local.layout import Layout
from mnp.local.nodes import leftovers
from mnp.local.nodes.netns import run_in_netns

SRV, OTHER = (
    PodSpec("srv", "node-1", {"lan": ["192.0.2.10"]}),
    PodSpec("other", "node-2", {"lan": ["192.0.2.12"]}),
)
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
ALLOWED, DENIED_PEER, DENIED_PORT = "cli->srv:8080", "other->srv:8080", "cli->srv:9090"
SETTLE_S = 1.0  # probing goes on this long after a scenario's change landed


@dataclass
class Figures:
    """What one fault scenario measured; `problems` names every promise broken."""

    scenario: str
    samples: int = 0
    denied_passes: int = 0
    allowed_failures: int = 0
    allowed_gap_max_s: float = 0.0
    converge_s: float | None = None  # the change made around the fault: fault → Applied + in the table
    takeover_s: float | None = None
    notes: str = ""
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"} | {"problems": len(self.problems)}


def _dyn_nad(data_dir: Path) -> dict[str, Any]:
    """macvlan on the same segment as `lan`, with host-local IPAM (state in the cluster dir)."""
    config = {
        "cniVersion": "0.4.0",
        "type": "macvlan",
        "mode": "bridge",
        "master": "eth0",
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.100", "rangeEnd": "192.0.2.199"}]],
        },
    }
    return {**nad("dyn"), "spec": {"config": json.dumps(config)}}


def _cli_deployment() -> dict[str, Any]:
    """One `app=cli` pod on node-2 on `dyn`, with the same socat listeners as the other pods."""
    template = PodSpec("cli", "node-2", {}).manifest()
    pod_spec = {k: v for k, v in template["spec"].items() if k != "nodeName"}
    pod_spec["nodeSelector"] = {"kubernetes.io/hostname": "node-2"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "cli", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "cli"}},
            "template": {
                "metadata": {
                    "labels": {"app": "cli"},
                    "annotations": {"k8s.v1.cni.cncf.io/networks": json.dumps([{"name": "dyn"}])},
                },
                "spec": pod_spec,
            },
        },
    }


def srv_policy(extra_ports: tuple[int, ...] = (), blocks: tuple[str, ...] = ()) -> dict[str, Any]:
    """srv's ingress from app=cli (and the CIDRs `blocks`) on TCP 8080 and `extra_ports`."""
    ports = [{"protocol": "TCP", "port": p} for p in (8080, *extra_ports)]
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {"app": "cli"}}}]
    peers += [{"ipBlock": {"cidr": c}} for c in blocks]
    spec = {
        "podSelector": {"matchLabels": {"app": "srv"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": peers, "ports": ports}],
    }
    return policy("srv-in", spec, networks="lan,dyn")


class Bed:
    """The cluster, its pods, the prober, and the operations the scenarios need."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout.at(root)
        self.cluster = LocalCluster(self.layout)
        self.ports: tuple[int, ...] = ()
        self.blocks: tuple[str, ...] = ()
        self.written_at = 0.0  # when wait_landed first saw srv's ruleset spec with the policy's ports
        self.enforced_at = 0.0  # when the policy was first enforced (bed())
        self.cli_pod: dict[str, Any] = {}
        self.cli_netns = ""
        self.cli_address = ""
        self.netns: dict[str, str] = {}
        self.prober = Prober(
            [
                ProbeFlow(ALLOWED, lambda: self.cli_netns, lambda: SRV.address("lan"), 8080, True),
                ProbeFlow(DENIED_PEER, lambda: self.netns["other"], lambda: SRV.address("lan"), 8080, False),
                ProbeFlow(DENIED_PORT, lambda: self.cli_netns, lambda: SRV.address("lan"), 9090, False),
            ]
        )

    # ---- bring-up ----------------------------------------------------------------------------------

    def up(self) -> None:
        """The cluster with mnp deployed, the pods running (no policy yet), the prober started and
        each of its flows seen passing once."""
        up(self.layout, 2, deploy=True)
        self.cluster.apply(
            manifests(nad("lan"), _dyn_nad(self.layout.root / "ipam-dyn"), SRV.manifest(), OTHER.manifest())
        )
        self.cluster.apply(manifests(_cli_deployment()))
        self.cluster.wait_running("srv", "other")
        self.netns = {p: self.cluster.netns_of(self.cluster.pod(p)) for p in ("srv", "other")}
        self.follow_cli()
        self.prober.__enter__()
        started = time.monotonic()
        for flow in (ALLOWED, DENIED_PEER, DENIED_PORT):  # the control: with no policy, all pass
            self.prober.wait_for_pass(flow, started, timeout=30)

    def down(self) -> None:
        try:
            self.prober.stop()
        finally:
            down(self.layout)

    def follow_cli(self, old_uid: str = "", timeout: float = 60) -> float:
        """Wait for a Running cli pod (not `old_uid`) with a `dyn` address; point the flows at it."""
        found: dict[str, Any] = {}

        def running() -> bool:
            items = self.cluster.get("pods")["items"]
            for p in items:
                uid, labels = p["metadata"]["uid"], p["metadata"].get("labels") or {}
                status = p["metadata"].get("annotations", {}).get(NETWORK_STATUS)
                if labels.get("app") != "cli" or uid == old_uid or "deletionTimestamp" in p["metadata"]:
                    continue
                if p.get("status", {}).get("phase") == "Running" and status:
                    found.update(p)
                    return True
            return False

        self.cluster.wait_for("a running cli pod", running, timeout)
        at = time.monotonic()
        entry = next(
            e for e in json.loads(found["metadata"]["annotations"][NETWORK_STATUS]) if "dyn" in e["name"]
        )
        self.cli_pod, self.cli_address = found, entry["ips"][0]
        self.cli_netns = self.cluster.netns_of(found)
        return at

    # ---- policy and state --------------------------------------------------------------------------

    def set_ports(self, *extra: int) -> None:
        self.ports = extra
        asyncio.run(_apply_policy(self.layout, srv_policy(extra, self.blocks)))

    def edit(self, *extra: int) -> float:
        """Set the policy's extra ports and wait until they landed (see wait_landed); returns when."""
        self.set_ports(*extra)
        return self.wait_landed()

    def set_blocks(self, *blocks: str) -> None:
        self.blocks = blocks
        asyncio.run(_apply_policy(self.layout, srv_policy(self.ports, blocks)))

    def wait_converged(self, timeout: float = 90) -> None:
        """`mnp local wait`: pods running, policies Enforced, rulesets Applied at their generation."""
        proc = subprocess.run(
            [sys.executable, "-m", "mnp", "local", "wait", "--dir", str(self.layout.root)]
            + ["--timeout", str(int(timeout))],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        assert proc.returncode == 0, f"mnp local wait failed: {proc.stderr}"

    def wait_landed(self, timeout: float = 60) -> float:
        """Until srv's ruleset has exactly the policy's ports, is Applied at its generation, and the
        table in srv's netns has them; returns when (time.monotonic())."""
        deadline = time.monotonic() + timeout
        self.written_at = 0.0
        while True:
            with contextlib.suppress(Exception):
                r = self.ruleset()
                if not self.written_at and _ports(json.dumps(r["spec"])) == {8080, *self.ports}:
                    self.written_at = time.monotonic()
                spec = self.applied_spec(r)
                if (
                    spec is not None
                    and _ports(spec) == {8080, *self.ports}
                    and all(f'"{c}"' in spec for c in self.blocks)
                    and self.table_has(*self.ports, 8080)
                ):
                    return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"srv's ruleset with ports {self.ports} not applied in {timeout:.0f}s")
            time.sleep(0.05)

    def ruleset(self) -> dict[str, Any]:
        return dict(asyncio.run(_get(self.layout, RULESETS, "srv", "default")))

    def applied_spec(self, r: dict[str, Any]) -> str | None:
        """The ruleset's spec as JSON text if it is Applied at its generation, else None."""
        status = r.get("status") or {}
        applied = any(
            c.get("type") == "Applied" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if not applied or status.get("observedGeneration") != r["metadata"]["generation"]:
            return None
        return json.dumps(r["spec"])

    def table_text(self) -> str:
        argv = ["nft", "list", "ruleset"]
        return str(run_in_netns(self.netns["srv"], argv, capture_output=True, text=True, check=True).stdout)

    def table_has(self, *ports: int) -> bool:
        text = self.table_text()
        return all(re.search(rf"\b{p}\b", text) for p in ports)

    # ---- components --------------------------------------------------------------------------------

    def container_pid(self, pod: dict[str, Any], container: str) -> int:
        """The main process of a container of a local-cluster pod (its cgroup's oldest process)."""
        node = next(n for n in self.layout.read_cluster().nodes if n.name == pod["spec"]["nodeName"])
        pids = leftovers.cgroup_processes(f"{node.cgroup_root}/pod{pod['metadata']['uid']}/{container}")
        assert pids, f"no process in container {container} of {pod['metadata']['name']}"
        return min(pids, key=_start_time)

    def system_pod(self, app: str, node: str) -> dict[str, Any]:
        items = self.cluster.get("pods", namespace="mnp-system")["items"]
        return next(
            p
            for p in items
            if p["metadata"]["labels"].get("app.kubernetes.io/name") == app and p["spec"]["nodeName"] == node
        )

    def lease_holder(self) -> str:
        with contextlib.suppress(Exception):
            lease = asyncio.run(_get(self.layout, LEASES, "mnp-controller", "mnp-system"))
            return str(lease["spec"].get("holderIdentity") or "")
        return ""

    # ---- figures -----------------------------------------------------------------------------------

    def figures(
        self, scenario: str, since: float, converge: float, *, allowed_may_fail: bool = False
    ) -> Figures:
        """What the prober saw from `since` until the cluster converged again (plus SETTLE_S)."""
        time.sleep(SETTLE_S)
        self.wait_converged()
        until = time.monotonic()
        samples = self.prober.snapshot(since, until)
        denied = passes(samples, DENIED_PEER) + passes(samples, DENIED_PORT)
        failed = failures(samples, ALLOWED)
        f = Figures(
            scenario,
            samples=len(samples),
            denied_passes=len(denied),
            allowed_failures=len(failed),
            allowed_gap_max_s=round(longest_gap(samples, ALLOWED, since, until), 3),
            converge_s=round(converge, 3),
        )
        expected = 3 * (until - since) / self.prober.interval
        if len(samples) < expected / 3:
            f.problems.append(
                f"only {len(samples)} samples in {until - since:.1f}s (expected ~{expected:.0f})"
            )
        if denied:
            f.problems.append(f"denied flows passed:\n{describe(denied)}")
        if failed and not allowed_may_fail:
            f.problems.append(f"the allowed flow failed:\n{describe(failed)}")
        return f


def _ports(spec: str) -> set[int]:
    return {int(p) for p in re.findall(r'"port": (\d+)', spec)}


def _start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 1 << 62


async def _get(layout: Layout, resource: Any, name: str, namespace: str) -> dict[str, Any]:
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        return await client.get(resource, name, namespace)


async def _apply_policy(layout: Layout, body: dict[str, Any]) -> None:
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        await _apply(client, body)


async def _apply(client: Client, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    await client.patch(
        MNPS, meta["name"], body, meta["namespace"], type=PatchType.APPLY, field_manager="faults", force=True
    )


@contextlib.contextmanager
def bed(root: Path) -> Iterator[Bed]:
    """A Bed with the policy applied and converged; down and gone afterwards."""
    b = Bed(root)
    try:
        b.up()
        b.set_ports()
        b.wait_converged()
        b.enforced_at = b.wait_landed()
        yield b
    finally:
        b.down()


def _kill(pid: int, what: str) -> None:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert what in argv, f"pid {pid} is not {what}: {argv}"
    os.kill(pid, signal.SIGKILL)


# ---- the scenarios -------------------------------------------------------------------------------


def policy_churn(b: Bed, edits: int = 100, seconds: float = 10.0) -> Figures:
    """`edits` edits of the policy's unrelated port in `seconds`; the probed flows never change."""
    t0 = time.monotonic()

    async def churn() -> None:
        async with await Client.from_kubeconfig(b.layout.kubeconfig) as client:
            for i in range(edits):
                await _apply(client, srv_policy((10000 + i,)))
                await asyncio.sleep(max(0.0, t0 + (i + 1) * seconds / edits - time.monotonic()))

    asyncio.run(churn())
    b.ports = (10000 + edits - 1,)
    edited = time.monotonic()
    landed = b.wait_landed()
    f = b.figures("policy churn", t0, landed - edited)
    f.notes = f"{edits} edits in {edited - t0:.1f}s; converge = last edit → applied"
    return f


def agent_kill(b: Bed) -> Figures:
    """kill -9 of node-1's agent, then a policy change: it lands once the kubelet restarted the agent."""
    pod = b.system_pod("mnp-agent", "node-1")
    pid = b.container_pid(pod, "agent")
    t0 = time.monotonic()
    _kill(pid, "agent")
    landed = b.edit(7001)
    f = b.figures("agent kill -9", t0, landed - t0)
    new = b.container_pid(b.system_pod("mnp-agent", "node-1"), "agent")
    if new == pid:
        f.problems.append("the agent was not restarted")
    return f


def controller_kill(b: Bed) -> Figures:
    """kill -9 of the leader replica; a policy edit made after the kill lands once a replica leads."""
    holder = b.lease_holder()
    name, _, pid = holder.rpartition("_")
    assert name.startswith("mnp-controller-") and pid.isdigit(), holder
    t0 = time.monotonic()
    _kill(int(pid), "controller")
    b.set_ports(7002)
    took: float | None = None
    deadline = t0 + 60
    while time.monotonic() < deadline:
        now = b.lease_holder()
        if now and now != holder:
            took = time.monotonic() - t0
            break
        time.sleep(0.1)
    landed = b.wait_landed()
    f = b.figures("controller leader kill -9", t0, landed - t0)
    f.takeover_s = None if took is None else round(took, 3)
    written = b.written_at - t0
    if took is None:
        f.problems.append(f"no other holder took the lease from {holder}")
    else:
        leader = b.lease_holder().rpartition("_")[0]
        who = "the standby replica" if leader != name else "the restarted replica"
        f.notes = f"new leader: {who}; it wrote the edit's ruleset {written:.2f}s after the kill"
    return f


def apiserver_kill(b: Bed, down_s: float = 3.0) -> Figures:
    """kill -9 of the API server for `down_s`; restart on its state and port; a later edit lands."""
    pid = int(b.layout.pid_file("apiserver").read_text())
    t0 = time.monotonic()
    _kill(pid, "apiserver")
    time.sleep(down_s)
    restart_apiserver(b.layout)
    restarted = time.monotonic()
    landed = b.edit(7003)
    f = b.figures("API server kill -9", t0, landed - restarted)
    f.notes = (
        f"down {restarted - t0:.1f}s; converge = restart → edit applied (the controller wrote the "
        f"ruleset {b.written_at - restarted:.2f}s after the restart)"
    )
    return f


def containerd_kill(b: Bed, node: str = "node-1") -> Figures:
    """kill -9 of `node`'s containerd; an edit while it is down, one after its restart: both land."""
    pid = int((b.layout.node_dir(node) / "containerd.pid").read_text())
    agent = b.system_pod("mnp-agent", node)
    t0 = time.monotonic()
    _kill(pid, "containerd")
    # The agent restarted while CRI is down must find srv's netns through procfs.
    _kill(b.container_pid(agent, "agent"), "agent")
    landed_down = b.edit(7004)
    restart_containerd(b.layout, node)
    restarted = time.monotonic()
    landed = b.edit(7005)
    f = b.figures("containerd kill -9", t0, landed_down - t0)
    f.notes = (
        f"agent restarted while containerd is down: edit applied in {landed_down - t0:.2f}s; "
        f"edit after containerd's restart in {landed - restarted:.2f}s"
    )
    if b.cluster.netns_of(b.cluster.pod("srv")) != b.netns["srv"]:
        f.problems.append("srv has a new sandbox after containerd's restart")
    logs = b.layout.pod_dir(node, "mnp-system", agent["metadata"]["name"], agent["metadata"]["uid"]) / "agent"
    if not any("through procfs" in log.read_text(errors="replace") for log in logs.glob("*.log")):
        f.problems.append(f"no agent log in {logs} says it found netns through procfs")
    return f


def pod_restart(b: Bed) -> Figures:
    """Delete the cli pod: its replacement has a new address, allowed; the old one no longer is."""
    old_pod, old_address = b.cli_pod, b.cli_address
    old_uid = old_pod["metadata"]["uid"]
    t0 = time.monotonic()
    b.cluster.kubectl("delete", "pod", old_pod["metadata"]["name"], "--wait=false")
    running = b.follow_cli(old_uid)
    allowed = b.prober.wait_for_pass(ALLOWED, running, timeout=60)
    f = b.figures("pod re-created, new IP", t0, allowed - running, allowed_may_fail=True)
    f.notes = (
        f"{old_address} → {b.cli_address}; delete → first allowed pass {allowed - t0:.2f}s, "
        "converge = new pod seen Running → first allowed pass"
    )
    if b.cli_address == old_address:
        f.problems.append(f"the new cli pod kept the address {old_address}")
    peers = json.dumps(b.ruleset()["spec"])
    if old_address in peers or b.cli_address not in peers:
        f.problems.append(f"srv's ruleset has {old_address} or lacks {b.cli_address}: {peers}")
    if old_address_passes(b, old_address):
        f.problems.append(f"a pod holding the old address {old_address} still reaches srv:8080")
    # The control: the same check passes once the policy allows that address again (by ipBlock).
    b.set_blocks(f"{old_address}/32")
    b.wait_landed()
    if not old_address_passes(b, old_address):
        f.problems.append(f"the control failed: {old_address} allowed by ipBlock does not reach srv:8080")
    b.set_blocks()
    b.wait_landed()
    return f


def policed_pod_restart(b: Bed) -> Figures:
    """Delete srv and create it again (same address, new netns): no denied flow passes while it starts.

    Nothing makes the agent's table come before the pod's listeners: the notes give the margin seen
    (netns → table, netns → listening on 8080), polled every few ms from the test.
    """
    t0 = time.monotonic()
    b.cluster.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    b.cluster.apply(manifests(SRV.manifest()))
    seen, table, listening = _watch_start(b, "srv")
    allowed = b.prober.wait_for_pass(ALLOWED, seen, timeout=60)
    f = b.figures("policed pod re-created", t0, allowed - seen, allowed_may_fail=True)
    f.notes = (
        f"converge = new netns seen → first allowed pass; netns → table {table - seen:.3f}s, "
        f"→ listening {listening - seen:.3f}s (margin {listening - table:+.3f}s)"
    )
    b.wait_landed()
    if listening < table:
        f.problems.append(f"srv listened {table - listening:.3f}s before its table was applied")
    return f


def _watch_start(b: Bed, pod: str, timeout: float = 60) -> tuple[float, float, float]:
    """When the new pod's netns appeared, got an nftables table, and a listener on 8080 (monotonic)."""
    deadline = time.monotonic() + timeout
    netns = ""
    while not netns:
        assert time.monotonic() < deadline, f"no sandbox of the new {pod} in {timeout:.0f}s"
        with contextlib.suppress(Exception):
            netns = b.cluster.netns_of(b.cluster.pod(pod))
    seen, table, listening = time.monotonic(), 0.0, 0.0
    b.netns[pod] = netns
    while not (table and listening):
        assert time.monotonic() < deadline, f"the new {pod}: table at {table}, listening at {listening}"
        if not table and "table" in _in(netns, "nft", "list", "tables"):
            table = time.monotonic()
        if not listening and ":8080 " in _in(netns, "ss", "-Hltn"):
            listening = time.monotonic()
    return seen, table, listening


def _in(netns: str, *argv: str) -> str:
    return str(run_in_netns(netns, list(argv), capture_output=True, text=True, timeout=10).stdout)


def old_address_passes(b: Bed, address: str, seconds: float = 1.5) -> bool:
    """Does `other` reach srv:8080 from `address` (added to its `lan` interface for the check)?"""
    other = b.netns["other"]
    cidr, dev = f"{address}/24", _lan_interface(b)
    run_in_netns(other, ["ip", "addr", "add", cidr, "dev", dev], check=True, timeout=10)
    try:
        for ns in (b.netns["srv"], other):  # no neighbour entry of the old pod's MAC left
            run_in_netns(ns, ["ip", "neigh", "flush", "all"], check=True, timeout=10)
        flow = ProbeFlow("old", lambda: other, lambda: SRV.address("lan"), 8080, False, lambda: address)
        with Prober([flow]) as p:
            time.sleep(seconds)
        return bool(passes(p.samples, "old"))
    finally:
        run_in_netns(other, ["ip", "addr", "del", cidr, "dev", dev], check=False, timeout=10)


def _lan_interface(b: Bed) -> str:
    pod = b.cluster.pod("other")
    status = json.loads(pod["metadata"]["annotations"][NETWORK_STATUS])
    return str(next(e["interface"] for e in status if e["name"].endswith("lan")))


SCENARIOS: dict[str, Callable[[Bed], Figures]] = {
    "churn": policy_churn,
    "agent": agent_kill,
    "controller": controller_kill,
    "apiserver": apiserver_kill,
    "containerd": containerd_kill,
    "pod": pod_restart,
    "policed": policed_pod_restart,
}

__all__ = ["SCENARIOS", "Bed", "Figures", "bed"]
