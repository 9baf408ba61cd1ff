"""`mnp local up` and `mnp local down`: bring a whole local cluster to life, and leave nothing of it.

Up: the API server (a process), a fabric netns with a bridge and one netns per node with `eth0` on
it, a containerd per node inside the node netns, a node process (kubelet) per node, and the
workload controllers (scheduler, Deployments, DaemonSets) as one process. Every long-running process
is detached, with a pid file and a log under DIR, so `up` returns once Nodes report Ready and the
cluster keeps running without it. With `deploy`, mnp itself (the repository's crds/ and deploy/) is
then applied.

Down works from DIR alone, also after a crash or kill -9 of any part: it stops the processes it finds
(checking each pid's command line names DIR, so a recycled pid is never killed), removes each node's
sandboxes, containers and mounts, the network namespaces, the cgroups, and empties DIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import mnp
from mnp.api.errors import ApiError, MnpError
from mnp.kube.client import Client
from mnp.kube.errors import AlreadyExists
from mnp.kube.resources import CRDS, NODES
from mnp.local.ctl.apply import apply_manifests
from mnp.local.ctl.kubeapi import KubeClusterApi
from mnp.local.ctl.manifests import CRD_KIND, Manifest, load_manifests
from mnp.local.layout import ClusterConfig, Layout, LayoutError, NodeConfig
from mnp.local.nodes import leftovers
from mnp.local.nodes.containerd import Containerd, cleanup_leftovers, start_node_runtime
from mnp.local.nodes.containerd_config import NodeRuntime
from mnp.local.nodes.fabric import Fabric, remove_leftovers
from mnp.local.nodes.image import build_pause_image
from mnp.local.nodes.netns import netns_path, run_in_netns
from mnp.offline import MANIFEST_SUFFIXES

Progress = Callable[[str], None]

MANIFESTS = Path(__file__).parent / "manifests"
# mnp itself, deployed by `up(deploy=True)`: the repository's crds/ and deploy/ next to the package.
REPO_ROOT = Path(mnp.__file__).parents[1]

# Pods' primary (eth0) addresses are IPv4 only: with an IPv6 range, host-local's result carries an IPv6
# gateway and the plugin waits for DAD (~1.5 s per pod) because containerd sets the pod's sysctls only
# after the primary CNI ADD. Secondary networks, which are what mnp polices, are dual-stack.
CLUSTER_CIDRS = ("10.88.0.0/16",)
NODE_CIDRS = ("198.18.0.0/24", "fd00:18::/64")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class ClusterError(MnpError):
    """The local cluster could not be brought up or down; says what to do next."""


def plan_cluster(layout: Layout, nodes: int) -> ClusterConfig:
    """Names and addresses for a cluster of `nodes` nodes in `layout` (pure)."""
    if not 1 <= nodes <= 50:
        raise ClusterError(f"--nodes must be between 1 and 50, not {nodes}")
    prefix = layout.prefix
    v4, v6 = (ipaddress.ip_network(c) for c in NODE_CIDRS)
    configs = []
    for i in range(1, nodes + 1):
        configs.append(
            NodeConfig(
                name=f"node-{i}",
                netns=f"{prefix}-n{i}",
                addresses=(
                    f"{v4.network_address + i}/{v4.prefixlen}",
                    f"{v6.network_address + i}/{v6.prefixlen}",
                ),
                pod_cidrs=(f"10.88.{i}.0/24",),
                cgroup_root=f"/{prefix}/node-{i}",
            )
        )
    return ClusterConfig(prefix, f"{prefix}-fab", CLUSTER_CIDRS, tuple(configs))


def node_runtime(layout: Layout, cluster: ClusterConfig, node: NodeConfig) -> NodeRuntime:
    return NodeRuntime(
        node=node.name,
        netns=node.netns,
        state_dir=layout.node_dir(node.name),
        pod_cidrs=node.pod_cidrs,
        cluster_cidrs=cluster.cluster_cidrs,
        cgroup_root=node.cgroup_root,
    )


def up(
    layout: Layout, nodes: int = 2, progress: Progress = lambda _: None, *, deploy: bool = False
) -> ClusterConfig:
    """Start everything and return once every Node is Ready; on failure, undo what was started.

    With `deploy`, mnp itself is then applied: the repository's crds/ (waited for until Established),
    then deploy/ if it holds manifests. Its pods are not waited for (`mnp local wait` does that). The
    default is off so that tests get a cluster without mnp workloads; `mnp local up` passes True.
    """
    if layout.cluster_file.exists():
        if _running(layout, "apiserver"):
            raise ClusterError(
                f"a cluster is already up in {layout.root}; `mnp local down --dir {layout.root}` first"
            )
        progress("removing what a previous cluster in this dir left behind")
        down(layout)
    started = time.monotonic()
    layout.root.mkdir(parents=True, exist_ok=True)
    cluster = plan_cluster(layout, nodes)
    layout.cluster_file.write_text(cluster.to_json())
    try:
        progress("starting the API server")
        _spawn(
            layout,
            "apiserver",
            [sys.executable, "-m", "mnp", "local", "apiserver", "--dir", str(layout.api_dir)],
        )
        progress(f"creating the fabric and {nodes} node network namespaces")
        _make_network(cluster)
        image = build_pause_image(layout.root / "image")
        for node in cluster.nodes:
            progress(f"starting containerd on {node.name}")
            start_node_runtime(node_runtime(layout, cluster, node), image)
        _wait_for(
            lambda: layout.kubeconfig.exists(), "the API server to write its kubeconfig", layout, "apiserver"
        )
        progress("installing the NetworkAttachmentDefinition CRD")
        asyncio.run(_install_crds(layout, [MANIFESTS / "network-attachment-definitions.yaml"]))
        for node in cluster.nodes:
            _spawn(
                layout,
                node.name,
                [sys.executable, "-m", "mnp.local.kubelet", "--dir", str(layout.root), "--node", node.name],
            )
        _spawn(
            layout,
            "controllers",
            [sys.executable, "-m", "mnp.local.workloads", "--kubeconfig", str(layout.kubeconfig)],
        )
        progress("waiting for the nodes to be Ready")
        asyncio.run(_wait_nodes_ready(layout, cluster))
        if deploy:
            asyncio.run(_deploy_mnp(layout, REPO_ROOT, progress))
    except BaseException:
        progress("start failed; removing what was started")
        down(layout)
        raise
    progress(f"cluster up in {time.monotonic() - started:.1f}s: kubeconfig {layout.kubeconfig}")
    return cluster


def down(layout: Layout, progress: Progress = lambda _: None) -> list[str]:
    """Stop and remove everything of the cluster in `layout`; returns what was removed. Idempotent."""
    removed: list[str] = []
    try:
        cluster: ClusterConfig | None = layout.read_cluster()
    except LayoutError:
        cluster = None
    progress("stopping node processes and controllers")
    components = ["controllers", *(n.name for n in cluster.nodes)] if cluster else ["controllers"]
    for component in components:
        removed += _stop(layout, component)
    removed += _stop_strays(layout)
    if cluster is not None:
        for node in cluster.nodes:
            progress(f"removing {node.name}: sandboxes, containers, containerd")
            for pid in leftovers.cgroup_processes(node.cgroup_root):
                leftovers.kill_and_wait(pid, signal.SIGKILL, STOP_TIMEOUT_S)
                removed.append(f"container process {pid}")
            if layout.node_dir(node.name).is_dir():
                removed += cleanup_leftovers(layout.node_dir(node.name))
            removed += [f"cgroup {c}" for c in leftovers.remove_cgroups(node.cgroup_root)]
        removed += [f"cgroup {c}" for c in leftovers.remove_cgroups(f"/{cluster.prefix}")]
    removed += [f"mount {m}" for m in leftovers.unmount_under(layout.root)]
    progress("removing network namespaces")
    removed += [f"netns {n}" for n in remove_leftovers(cluster.prefix if cluster else layout.prefix)]
    progress("stopping the API server")
    removed += _stop(layout, "apiserver")
    if layout.root.is_dir():
        for child in layout.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return removed


def restart_apiserver(layout: Layout) -> int:
    """Start the API server again (after it died) on its state dir and its kubeconfig's port; its pid.

    Clients keep their kubeconfig: same address, same CA (kept in the state dir). Waits until it serves.
    """
    if _running(layout, "apiserver"):
        raise ClusterError(f"the API server of {layout.root} still runs")
    server = yaml.safe_load(layout.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    port = str(server).rsplit(":", 1)[1]
    argv = [sys.executable, "-m", "mnp", "local", "apiserver", "--dir", str(layout.api_dir)]
    pid = _spawn(layout, "apiserver", [*argv, "--address", f"127.0.0.1:{port}"])
    asyncio.run(_wait_serving(layout))
    return pid


def restart_containerd(layout: Layout, node: str) -> int:
    """Start `node`'s containerd again (after it died) on its state dir; its sandboxes are picked up."""
    cluster = layout.read_cluster()
    config = next((n for n in cluster.nodes if n.name == node), None)
    if config is None:
        raise ClusterError(f"no node {node} in {layout.root}")
    ctrd = Containerd(node_runtime(layout, cluster, config))
    ctrd.start()
    assert ctrd.pid is not None
    return ctrd.pid


# ---- network ---------------------------------------------------------------------------------------


def _make_network(cluster: ClusterConfig) -> None:
    fabric = Fabric(cluster.prefix, nodes=len(cluster.nodes))  # kept: down removes it by prefix
    assert fabric.fabric_netns == cluster.fabric_netns
    for node, netns in zip(cluster.nodes, fabric.node_names, strict=True):
        assert netns == node.netns
        for address in node.addresses:
            argv = ["ip", "addr", "add", address, "dev", "eth0"] + (["nodad"] if ":" in address else [])
            proc = run_in_netns(netns_path(netns), argv, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterError(f"{node.name}: {' '.join(argv)}: {proc.stderr.strip()}")


# ---- processes -------------------------------------------------------------------------------------


def _spawn(layout: Layout, component: str, argv: list[str]) -> int:
    """Start a detached component with its log and pid file under DIR."""
    log_path, pid_path = layout.log_file(component), layout.pid_file(component)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MNP_LOCAL_DIR": str(layout.root), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def _pid(layout: Layout, component: str) -> int | None:
    """The component's pid if it runs and really is ours (its command line names DIR)."""
    try:
        pid = int(layout.pid_file(component).read_text())
    except (OSError, ValueError):
        return None
    return pid if _ours(layout, pid) else None


def _ours(layout: Layout, pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    root = str(layout.root).encode()
    return any(a == root or a.startswith(root + b"/") for a in args)


def _running(layout: Layout, component: str) -> bool:
    return _pid(layout, component) is not None


def _stop(layout: Layout, component: str) -> list[str]:
    pid = _pid(layout, component)
    layout.pid_file(component).unlink(missing_ok=True)
    if pid is None:
        return []
    leftovers.kill_and_wait(pid, signal.SIGTERM, STOP_TIMEOUT_S)
    return [f"{component} pid {pid}"]


def _stop_strays(layout: Layout) -> list[str]:
    """Processes of this cluster without a pid file (a crash between spawn and writing it)."""
    out = []
    for pid, _ in leftovers.iter_processes():
        if pid != os.getpid() and _ours(layout, pid) and _is_component(pid):
            leftovers.kill_and_wait(pid, signal.SIGTERM, STOP_TIMEOUT_S)
            out.append(f"stray pid {pid}")
    return out


def _is_component(pid: int) -> bool:
    with contextlib.suppress(OSError):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return b"mnp.local.kubelet" in args or b"mnp.local.workloads" in args
    return False


def _wait_for(check: Callable[[], bool], what: str, layout: Layout, *components: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        _check_alive(layout, what, deadline, *components)
        time.sleep(0.1)


def _check_alive(layout: Layout, what: str, deadline: float, *components: str) -> None:
    """Raise if a component we wait on has exited, or the wait is over."""
    for component in components:
        if not _running(layout, component):
            tail = _tail(layout.log_file(component))
            raise ClusterError(f"{component} exited while waiting for {what}; its log ends with:\n{tail}")
    if time.monotonic() > deadline:
        raise ClusterError(
            f"timed out after {START_TIMEOUT_S:.0f}s waiting for {what}; logs in {layout.root / 'logs'}"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _install_crds(layout: Layout, paths: list[Path]) -> None:
    """Create the CRDs in `paths` (kept if they exist) and wait until the API server serves them."""
    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        for doc in docs:
            with contextlib.suppress(AlreadyExists):
                await client.create(CRDS, doc)
        deadline = time.monotonic() + START_TIMEOUT_S
        for doc in docs:
            while not _established(await client.get(CRDS, doc["metadata"]["name"])):
                if time.monotonic() > deadline:
                    raise ClusterError(f"CRD {doc['metadata']['name']} not Established in time")
                await asyncio.sleep(0.05)


def _manifest_files(directory: Path) -> bool:
    return directory.is_dir() and any(
        f.is_file() and f.suffix in MANIFEST_SUFFIXES for f in directory.rglob("*")
    )


async def _deploy_mnp(layout: Layout, repo: Path, progress: Progress) -> None:
    """Server-side apply of repo/crds (then wait until Established) and repo/deploy (if it has files)."""
    crds_dir, deploy_dir = repo / "crds", repo / "deploy"
    if not _manifest_files(crds_dir):
        raise ClusterError(
            f"no CRDs in {crds_dir}: deploying mnp needs its repository (crds/ and deploy/ next to the "
            "mnp package); bring the cluster up without deploying mnp instead"
        )
    batches = [(crds_dir, load_manifests([str(crds_dir)]))]
    if _manifest_files(deploy_dir):
        batches.append((deploy_dir, load_manifests([str(deploy_dir)])))
    else:
        progress(f"{deploy_dir} has no manifests: applying the CRDs only")
    api = await KubeClusterApi.from_kubeconfig(layout.kubeconfig)
    try:
        for directory, manifests in batches:
            progress(f"applying {directory}")
            out, err = io.StringIO(), io.StringIO()
            failed = await apply_manifests(api, manifests, out, err)
            for line in out.getvalue().splitlines():
                progress(line)
            if failed:
                raise ClusterError(f"applying {directory} failed:\n{err.getvalue().rstrip()}")
            await _wait_established(api, [m for m in manifests if m.is_crd])
    finally:
        await api.close()


async def _wait_established(api: KubeClusterApi, crds: list[Manifest]) -> None:
    if not crds:
        return
    kind = await api.kind_for("apiextensions.k8s.io/v1", CRD_KIND)
    deadline = time.monotonic() + START_TIMEOUT_S
    for m in crds:
        while not _established(await api.get(kind, "", m.name)):
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {m.name} not Established in time")
            await asyncio.sleep(0.05)


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def _wait_nodes_ready(layout: Layout, cluster: ClusterConfig) -> None:
    """Until every node of `cluster` has a Ready Node object (one client for the whole wait)."""
    what = "every Node to be Ready"
    deadline = time.monotonic() + START_TIMEOUT_S
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        while True:
            try:
                nodes = (await client.list(NODES)).items
            except ApiError:
                nodes = []
            ready = {
                str((n.get("metadata") or {}).get("name"))
                for n in nodes
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            if all(n.name in ready for n in cluster.nodes):
                return
            _check_alive(layout, what, deadline, *[n.name for n in cluster.nodes])
            await asyncio.sleep(0.1)


async def _wait_serving(layout: Layout) -> None:
    """Until the API server answers a list (one client for the whole wait)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with await Client.from_kubeconfig(layout.kubeconfig) as client:
        while True:
            try:
                await client.list(NODES)
                return
            except (ApiError, OSError):
                _check_alive(layout, "the API server to serve", deadline, "apiserver")
                await asyncio.sleep(0.05)


__all__ = [
    "ClusterError",
    "down",
    "node_runtime",
    "plan_cluster",
    "restart_apiserver",
    "restart_containerd",
    "up",
]
