"""Real containerd per node (in the node netns of a Fabric), pod sandboxes through CRI, and teardown.

Primary pod network: 198.18.0.0/16 (RFC 2544 benchmark range, never routed; only inside the test's
namespaces), node N hands out 198.18.N.0/24; dual stack adds 2001:db8:18::/48, node N
2001:db8:18:N::/64. Secondary networks follow tests/conftest.py (network A). Every test with a
cluster ends with the same check: no containerd, shim or sandbox process, no netns, mount, cgroup,
shim socket or CNI result file of it is left, and the root netns' links are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest
from kernel_plan import a4, a6, assert_no_netns, on_a

from mnp.local.nodes import cri_pb2, cri_pb2_grpc, leftovers
from mnp.local.nodes.cni import cni_add, cni_del
from mnp.local.nodes.containerd import Containerd, cleanup_leftovers, start_node_runtime
from mnp.local.nodes.containerd_config import ContainerdError, NodeRuntime, write_config
from mnp.local.nodes.cri import LABEL_POD_UID, CriClient, SandboxNotFound, SandboxState
from mnp.local.nodes.fabric import Fabric, macvlan_config
from mnp.local.nodes.image import OciImage, build_pause_image
from mnp.local.nodes.netns import POD_SYSCTLS, get_sysctl, run_in_netns
from mnp.local.nodes.probe import Probe, ping, probe_all

pytestmark = pytest.mark.kernel

CLUSTER_CIDR = "198.18.0.0/16"
CLUSTER_CIDR6 = "2001:db8:18::/48"


@pytest.fixture(scope="module")
def pause_image(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    return build_pause_image(tmp_path_factory.mktemp("image") / "pause.tar")


@dataclass
class Node:
    """One node of the test cluster: its containerd and a CRI client on its socket."""

    index: int
    rt: NodeRuntime
    containerd: Containerd
    cri: CriClient
    sandboxes: list[str] = field(default_factory=list)  # every id ever made here, for the leftover check
    pids: list[int] = field(default_factory=list)

    def run(
        self, name: str, uid: str | None = None, sysctls: dict[str, str] | None = None, attempt: int = 0
    ) -> str:
        uid = uid or f"uid-{name}"
        labels, annotations = {"app": name}, {"note": "test"}
        sid = self.cri.run_sandbox(
            name,
            "default",
            uid,
            labels,
            annotations,
            self.rt.pod_cgroup(uid),
            sysctls=sysctls,
            attempt=attempt,
        )
        self.sandboxes.append(sid)
        self.pids.append(self.cri.sandbox_status(sid).pid)
        return sid


@dataclass
class Cluster:
    fabric: Fabric
    nodes: list[Node]
    state_root: Path
    cgroup_prefix: str


def node_runtime(
    fabric: Fabric, index: int, state_root: Path, cgroup_prefix: str, dual_stack: bool = False
) -> NodeRuntime:
    v6 = dual_stack
    return NodeRuntime(
        node=f"node-{index}",
        netns=fabric.node_netns(index),
        state_dir=state_root / f"n{index}",
        pod_cidrs=(f"198.18.{index}.0/24",) + ((f"2001:db8:18:{index}::/64",) if v6 else ()),
        cluster_cidrs=(CLUSTER_CIDR,) + ((CLUSTER_CIDR6,) if v6 else ()),
        cgroup_root=f"/{cgroup_prefix}/node-{index}",
    )


def root_links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(str(link["ifname"]) for link in json.loads(out.stdout))


def assert_nothing_left(cluster: Cluster) -> None:
    """No process, netns, mount, cgroup, shim socket or CNI result of this cluster remains."""
    for node in cluster.nodes:
        rt = node.rt
        config = str(rt.config_path)
        assert leftovers.processes_with_args("containerd", ["--config", config]) == []
        assert leftovers.processes_with_args("containerd-shim-runc-v2", ["-address", str(rt.socket)]) == []
        alive = [pid for pid in node.pids if pid and leftovers.process_alive(pid)]
        assert alive == [], f"sandbox processes still running on {rt.node}: {alive}"
        for sid in node.sandboxes:
            assert not leftovers.shim_socket(str(rt.socket), "k8s.io", sid).exists()
            results = Path("/var/lib/cni/results")
            assert not (results.is_dir() and any(sid in f.name for f in results.iterdir()))
    assert leftovers.mounts_under(cluster.state_root) == []
    assert [
        h / cluster.cgroup_prefix
        for h in leftovers.cgroup_hierarchies()
        if (h / cluster.cgroup_prefix).exists()
    ] == []
    assert_no_netns(cluster.fabric.prefix)


@contextlib.contextmanager
def make_cluster(prefix: str, image: OciImage, nodes: int = 2, dual_stack: bool = False) -> Iterator[Cluster]:
    links_before = root_links()
    state_root = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))  # short: unix socket paths
    cgroup_prefix = f"{prefix}-cg"
    made: list[Node] = []
    try:
        with Fabric(prefix, nodes=nodes) as fabric:
            cluster = Cluster(fabric, made, state_root, cgroup_prefix)
            try:
                for i in range(1, nodes + 1):
                    rt = node_runtime(fabric, i, state_root, cgroup_prefix, dual_stack)
                    ctrd = start_node_runtime(rt, image)
                    made.append(Node(i, rt, ctrd, ctrd.client()))
                yield cluster
            finally:
                errors = []
                for node in made:
                    node.cri.close()
                    try:
                        node.containerd.stop()
                        cleanup_leftovers(node.rt.state_dir)  # also what stop() missed, e.g. after a restart
                    except Exception as e:  # stop every node before reporting
                        errors.append(e)
                if errors:
                    raise errors[0]
        assert_nothing_left(cluster)
        assert root_links() == links_before
    finally:
        shutil.rmtree(state_root, ignore_errors=True)


@pytest.fixture
def cluster(unique_prefix: str, pause_image: OciImage) -> Iterator[Cluster]:
    with make_cluster(unique_prefix, pause_image) as c:
        yield c


def links_in(netns: str) -> dict[str, dict[str, object]]:
    out = run_in_netns(netns, ["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    return {str(link["ifname"]): link for link in json.loads(out.stdout)}


def v4_addresses(link: dict[str, object]) -> list[str]:
    infos = link.get("addr_info")
    assert isinstance(infos, list)
    return [f"{a['local']}/{a['prefixlen']}" for a in infos if a["family"] == "inet"]


def test_sandbox_runs_with_a_netns_whose_eth0_has_the_primary_address(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    sid = node.run("a")
    status = node.cri.sandbox_status(sid)
    assert status.state is SandboxState.READY
    assert (status.name, status.namespace, status.uid) == ("a", "default", "uid-a")
    assert status.labels == {
        "app": "a",
        "io.kubernetes.pod.name": "a",
        "io.kubernetes.pod.namespace": "default",
        LABEL_POD_UID: "uid-a",
    }
    assert status.annotations == {"note": "test"}
    assert len(status.ips) == 1 and status.ips[0].startswith("198.18.1.")
    assert status.netns_path.startswith(str(node.rt.state_dir)) and os.path.exists(status.netns_path)
    assert os.stat(status.netns_path).st_ino == os.stat(f"/proc/{status.pid}/ns/net").st_ino
    assert v4_addresses(links_in(status.netns_path)["eth0"]) == [f"{status.ips[0]}/16"]
    assert [s.id for s in node.cri.list_sandboxes({"app": "a"})] == [sid]
    assert node.cri.list_sandboxes({"app": "nope"}) == []
    assert node.cri.find_sandbox_netns("uid-a") == status.netns_path
    assert node.cri.find_sandbox_netns("uid-other") is None
    # The pod's cgroup sits under the node's cgroup root in every hierarchy, as the parent we passed.
    assert all((h / node.rt.pod_cgroup("uid-a").strip("/")).is_dir() for h in leftovers.cgroup_hierarchies())


@pytest.mark.slow  # DAD on the sandbox's eth0 runs before CRI sysctls apply: ~1.5 s per sandbox
def test_dual_stack_primary_network_reaches_the_other_node_over_both_families(
    unique_prefix: str, pause_image: OciImage
) -> None:
    with make_cluster(unique_prefix, pause_image, dual_stack=True) as cluster:
        n1, n2 = cluster.nodes
        a = n1.cri.sandbox_status(n1.run("a", sysctls=dict(POD_SYSCTLS)))
        b = n2.cri.sandbox_status(n2.run("b", sysctls=dict(POD_SYSCTLS)))
        assert a.ips[0].startswith("198.18.1.") and a.ips[1].startswith("2001:db8:18:1::")
        assert b.ips[0].startswith("198.18.2.") and b.ips[1].startswith("2001:db8:18:2::")
        probes = [Probe(a.netns_path, b.netns_path, ip, 8080, "tcp") for ip in b.ips]
        assert probe_all(probes, timeout=3.0) == [True, True]


def test_sandbox_netns_path_works_in_a_mount_namespace_made_before_the_sandbox(cluster: Cluster) -> None:
    # Like a container with hostPath volumes: a private mount namespace with slave propagation.
    holder = subprocess.Popen(["unshare", "--mount", "--propagation=slave", "sleep", "60"])
    try:
        for _ in range(100):  # the mount namespace must exist before the sandbox's netns is mounted
            if os.readlink(f"/proc/{holder.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)
        node = cluster.nodes[0]
        status = node.cri.sandbox_status(node.run("a"))
        argv = [
            "nsenter",
            f"--mount=/proc/{holder.pid}/ns/mnt",
            "nsenter",
            f"--net={status.netns_path}",
            "ip",
            "-br",
            "addr",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert status.ips[0] in out.stdout
    finally:
        holder.kill()
        holder.wait()


def test_multus_style_net1_in_sandboxes_carries_traffic_across_nodes(cluster: Cluster) -> None:
    n1, n2 = cluster.nodes
    # Sysctls through CRI land in the sandbox netns before any secondary link exists (DAD off).
    sysctls = dict(POD_SYSCTLS)
    a = n1.cri.sandbox_status(n1.run("a", sysctls=sysctls))
    b = n2.cri.sandbox_status(n2.run("b", sysctls=sysctls))
    assert get_sysctl(a.netns_path, "net.ipv6.conf.default.accept_dad") == "0"
    assert get_sysctl(a.netns_path, "net.ipv4.conf.all.arp_ignore") == "1"
    attached = []
    try:
        for pod, node, host in ((a, n1, 5), (b, n2, 7)):
            cni_add(
                macvlan_config(on_a(host)),
                netns=pod.netns_path,
                ifname="net1",
                container_id=pod.id,
                pod_namespace="default",
                pod_name=pod.name,
                node_netns=node.rt.netns,
            )
            attached.append((pod, node, host))
        assert "net1" in links_in(a.netns_path) and "net1" in links_in(b.netns_path)
        probes = [
            Probe(a.netns_path, b.netns_path, a4(7), 8080, "tcp"),
            Probe(a.netns_path, b.netns_path, a6(7), 8080, "udp"),
            Probe(b.netns_path, a.netns_path, a4(5), 8081, "udp"),
            Probe(b.netns_path, a.netns_path, a6(5), 8081, "tcp"),
            # Primary network: one subnet over the fabric, so eth0 to eth0 across nodes works too.
            Probe(a.netns_path, b.netns_path, b.ips[0], 8082, "tcp"),
        ]
        assert probe_all(probes, timeout=3.0) == [True] * len(probes)
        assert ping(a.netns_path, a4(7), timeout=2)
    finally:
        for pod, node, host in attached:
            cni_del(
                macvlan_config(on_a(host)),
                netns=pod.netns_path,
                ifname="net1",
                container_id=pod.id,
                pod_namespace="default",
                pod_name=pod.name,
                node_netns=node.rt.netns,
            )
    assert "net1" not in links_in(a.netns_path)


def test_stop_closes_the_netns_and_remove_forgets_the_sandbox(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    sid = node.run("a")
    netns = node.cri.sandbox_status(sid).netns_path
    node.cri.stop_sandbox(sid)
    stopped = node.cri.sandbox_status(sid)
    assert stopped.state is SandboxState.NOTREADY and stopped.netns_path == ""
    assert not os.path.exists(netns)
    assert node.cri.find_sandbox_netns("uid-a") is None
    assert [s.id for s in node.cri.list_sandboxes(state=SandboxState.NOTREADY)] == [sid]
    assert node.cri.list_sandboxes(state=SandboxState.READY) == []
    node.cri.stop_sandbox(sid)  # idempotent
    node.cri.remove_sandbox(sid)
    assert node.cri.list_sandboxes() == []
    with pytest.raises(SandboxNotFound):
        node.cri.sandbox_status(sid)
    node.cri.remove_sandbox(sid)  # idempotent


def test_find_sandbox_netns_picks_the_ready_attempt_of_the_pod(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    first = node.run("a")
    node.cri.stop_sandbox(first)
    second = node.run("a", attempt=1)
    status = node.cri.sandbox_status(second)
    assert node.cri.find_sandbox_netns("uid-a") == status.netns_path
    found = node.cri.find_sandbox("uid-a")
    assert found is not None and found.id == second


def test_find_sandbox_netns_finds_a_sandbox_made_without_kubelet_labels(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    # Another CRI client, straight on the generated stub: metadata only, no io.kubernetes.pod.* labels.
    channel = grpc.insecure_channel(f"unix://{node.rt.socket}")
    try:
        config = cri_pb2.PodSandboxConfig(
            metadata=cri_pb2.PodSandboxMetadata(name="raw", namespace="default", uid="uid-raw"),
            hostname="raw",
            linux=cri_pb2.LinuxPodSandboxConfig(cgroup_parent=node.rt.pod_cgroup("uid-raw")),
        )
        stub = cri_pb2_grpc.RuntimeServiceStub(channel)
        sid = stub.RunPodSandbox(cri_pb2.RunPodSandboxRequest(config=config), timeout=30).pod_sandbox_id
    finally:
        channel.close()
    node.sandboxes.append(sid)
    status = node.cri.sandbox_status(sid)
    node.pids.append(status.pid)
    assert LABEL_POD_UID not in status.labels
    assert node.cri.find_sandbox_netns("uid-raw") == status.netns_path


def test_containerd_restart_keeps_the_running_sandbox(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    sid = node.run("a")
    before = node.cri.sandbox_status(sid)
    node.containerd.shutdown()
    assert leftovers.process_alive(before.pid) and os.path.exists(before.netns_path)
    node.containerd.start()
    after = node.cri.sandbox_status(sid)
    assert after.state is SandboxState.READY
    assert (after.netns_path, after.pid, after.ips) == (before.netns_path, before.pid, before.ips)
    assert node.cri.find_sandbox_netns("uid-a") == before.netns_path


def test_two_containerd_instances_side_by_side_keep_their_own_sandboxes(cluster: Cluster) -> None:
    n1, n2 = cluster.nodes
    assert n1.rt.socket != n2.rt.socket and n1.containerd.pid != n2.containerd.pid
    s1 = n1.run("same", uid="uid-same")  # the same pod identity on both runtimes does not collide
    s2 = n2.run("same", uid="uid-same")
    assert [s.id for s in n1.cri.list_sandboxes()] == [s1]
    assert [s.id for s in n2.cri.list_sandboxes()] == [s2]
    assert n1.cri.sandbox_status(s1).ips[0].startswith("198.18.1.")
    assert n2.cri.sandbox_status(s2).ips[0].startswith("198.18.2.")
    n1.containerd.stop()
    assert n2.cri.sandbox_status(s2).state is SandboxState.READY
    assert n2.cri.find_sandbox_netns("uid-same") == n2.cri.sandbox_status(s2).netns_path


def test_cleanup_leftovers_after_kill_9_of_containerd_removes_everything(cluster: Cluster) -> None:
    n1, n2 = cluster.nodes
    s1 = n1.cri.sandbox_status(n1.run("a"))
    s2 = n2.run("b")
    assert n1.containerd.pid is not None
    os.kill(n1.containerd.pid, signal.SIGKILL)
    n1.containerd.shutdown()  # reaps the dead process; the sandbox keeps running under its shim
    assert leftovers.process_alive(s1.pid) and os.path.exists(s1.netns_path)
    removed = cleanup_leftovers(n1.rt.state_dir)
    assert any(r.startswith("shim pid") for r in removed) and any(r.startswith("mount ") for r in removed)
    assert not leftovers.process_alive(s1.pid) and not os.path.exists(s1.netns_path)
    assert leftovers.mounts_under(n1.rt.state_dir) == []
    assert n2.cri.sandbox_status(s2).state is SandboxState.READY  # the other node's sweep left it alone
    # Node 2's containerd is alive and unknown to the caller: its sandboxes go through CRI first.
    removed2 = cleanup_leftovers(n2.rt.state_dir)
    assert any("(through CRI)" in r for r in removed2) and any(
        r.startswith("containerd pid") for r in removed2
    )
    assert cleanup_leftovers(n1.rt.state_dir) == [] and cleanup_leftovers(n2.rt.state_dir) == []


def test_cleanup_after_kill_9_of_containerd_and_shim_with_the_fabric_gone(cluster: Cluster) -> None:
    n1 = cluster.nodes[0]
    s1 = n1.cri.sandbox_status(n1.run("a"))
    shims = leftovers.processes_with_args("containerd-shim-runc-v2", ["-address", str(n1.rt.socket)])
    assert len(shims) == 1 and n1.containerd.pid is not None
    for pid in (n1.containerd.pid, shims[0]):
        os.kill(pid, signal.SIGKILL)
    n1.containerd.shutdown()
    cluster.fabric.close()  # node netns names gone; the orphaned sandbox still holds its own netns
    assert leftovers.process_alive(s1.pid) and os.path.exists(s1.netns_path)
    removed = cleanup_leftovers(n1.rt.state_dir)
    assert f"sandbox process pid {s1.pid}" in removed
    assert not leftovers.process_alive(s1.pid) and not os.path.exists(s1.netns_path)
    assert leftovers.mounts_under(n1.rt.state_dir) == []
    assert leftovers.cgroup_processes(n1.rt.cgroup_root) == []


def test_cleanup_finds_a_sandbox_outside_the_node_cgroup_root_by_its_runc_state(cluster: Cluster) -> None:
    n1 = cluster.nodes[0]
    parent = f"/{cluster.cgroup_prefix}/elsewhere"
    sid = n1.cri.run_sandbox("odd", "default", "uid-odd", {}, {}, parent)
    n1.sandboxes.append(sid)
    status = n1.cri.sandbox_status(sid)
    n1.pids.append(status.pid)
    try:
        shims = leftovers.processes_with_args("containerd-shim-runc-v2", ["-address", str(n1.rt.socket)])
        assert n1.containerd.pid is not None
        for pid in (n1.containerd.pid, *shims):
            os.kill(pid, signal.SIGKILL)
        n1.containerd.shutdown()
        assert leftovers.cgroup_processes(n1.rt.cgroup_root) == []  # not where the node looks first
        removed = cleanup_leftovers(n1.rt.state_dir)
        assert f"sandbox process pid {status.pid}" in removed
        assert not leftovers.process_alive(status.pid) and not os.path.exists(status.netns_path)
        assert [h for h in leftovers.cgroup_hierarchies() if (h / parent.strip("/") / sid).exists()] == []
    finally:
        # The parent was ours to give and is ours to remove; runc only removes the sandbox's own cgroup.
        for h in leftovers.cgroup_hierarchies():
            with contextlib.suppress(FileNotFoundError):
                (h / parent.strip("/")).rmdir()


def test_stop_after_the_fabric_is_gone_still_removes_every_sandbox(cluster: Cluster) -> None:
    n1, n2 = cluster.nodes
    a = n1.cri.sandbox_status(n1.run("a"))
    b = n2.cri.sandbox_status(n2.run("b"))
    cluster.fabric.close()  # node eth0 (the primary network's master) is gone with the fabric bridge
    for node, pod in ((n1, a), (n2, b)):
        node.cri.close()
        node.containerd.stop()
        assert not leftovers.process_alive(pod.pid) and not os.path.exists(pod.netns_path)
        assert leftovers.mounts_under(node.rt.state_dir) == []


def test_a_second_containerd_on_the_same_state_dir_is_refused(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    with pytest.raises(ContainerdError, match="already runs"):
        Containerd(node.rt).start()
    assert node.cri.version().runtime_name == "containerd"


def test_start_in_a_missing_netns_fails_without_leaving_a_process(
    unique_prefix: str, pause_image: OciImage, tmp_path: Path
) -> None:
    state_root = Path(tempfile.mkdtemp(prefix=f"{unique_prefix}-", dir="/tmp"))
    try:
        rt = NodeRuntime(
            "node-1",
            f"{unique_prefix}-gone",
            state_root / "n1",
            ("198.18.1.0/24",),
            (CLUSTER_CIDR,),
            f"/{unique_prefix}-cg/node-1",
        )
        write_config(rt, pause_image.ref)
        with pytest.raises(ContainerdError, match="does not exist"):
            Containerd(rt).start()
        long_rt = NodeRuntime(
            "node-1", "x", Path("/tmp") / ("d" * 100), ("198.18.1.0/24",), (CLUSTER_CIDR,), "/x"
        )
        with pytest.raises(ContainerdError, match="too long"):
            write_config(long_rt, pause_image.ref)
        assert leftovers.processes_with_args("containerd", ["--config", str(rt.config_path)]) == []
    finally:
        shutil.rmtree(state_root, ignore_errors=True)


def test_pause_image_is_byte_for_byte_deterministic(pause_image: OciImage, tmp_path: Path) -> None:
    again = build_pause_image(tmp_path / "again.tar")
    assert again.manifest_digest == pause_image.manifest_digest
    assert again.path.read_bytes() == pause_image.path.read_bytes()
