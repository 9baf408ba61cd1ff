"""The agent's netns finders on a real local cluster: containerd's CRI and the host's /proc.

A one-node cluster with two pods on a macvlan network; every finder must name the very namespace the
pod's processes are in (compared by device and inode), keep naming it across container restarts, and
name nothing once the pod is deleted. The cluster is down and checked clean afterwards, whatever failed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster, local_cluster
from test_local_cluster import nads, pod

from mnp.agent.netns import CriFinder, NetnsFinder, NetnsRef, NetnsSource, ProcfsFinder
from mnp.local.nodes import leftovers
from mnp.local.nodes.cri import CriClient

pytestmark = pytest.mark.kernel

NODE = "node-1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(nodes=1) as c:
        c.apply(nads(c.layout.root / "ipam-shared"))
        c.apply(
            "\n---\n".join(
                on_lan(name, address) for name, address in (("a", "192.0.2.21"), ("b", "192.0.2.22"))
            )
        )
        c.wait_running("a", "b")
        yield c


def on_lan(name: str, address: str) -> str:
    """A pod on NODE with `address` on the static macvlan network (test_local_cluster's NADs and pods)."""
    return pod(name, [{"name": "lan-static", "ips": [f"{address}/24"]}], NODE)


def cri_finder(cluster: LocalCluster) -> CriFinder:
    socket = cluster.layout.node_dir(NODE) / "containerd.sock"
    return CriFinder(f"unix://{socket}", connect=lambda path: CriClient(path, timeout=10))


def uid(cluster: LocalCluster, name: str) -> str:
    return str(cluster.pod(name)["metadata"]["uid"])


def pod_cgroup(cluster: LocalCluster, pod_uid: str) -> str:
    return f"{cluster.layout.read_cluster().node(NODE).cgroup_root}/pod{pod_uid}"


def netns_of_processes(cluster: LocalCluster, pod_uid: str) -> set[tuple[int, int]]:
    """(dev, inode) of the netns of every process in the pod's cgroup, as the kernel reports them."""
    pids = leftovers.cgroup_processes(pod_cgroup(cluster, pod_uid))
    assert pids, f"no process in the cgroup of pod {pod_uid}"
    found = set()
    for pid in pids:
        st = os.stat(f"/proc/{pid}/ns/net")
        found.add((st.st_dev, st.st_ino))
    return found


def found(ref: NetnsRef | None) -> NetnsRef:
    assert ref is not None
    return ref


def test_cri_finds_each_pods_netns_and_it_is_the_one_the_pods_processes_are_in(cluster: LocalCluster) -> None:
    finder = cri_finder(cluster)
    try:
        refs = {name: found(finder.find(uid(cluster, name))) for name in ("a", "b")}
    finally:
        finder.close()
    assert refs["a"].identity != refs["b"].identity
    for name, ref in refs.items():
        assert ref.source is NetnsSource.CRI
        assert netns_of_processes(cluster, uid(cluster, name)) == {ref.identity}
        assert ref.path == cluster.netns_of(cluster.pod(name))
        assert ref.identity != (os.stat("/proc/self/ns/net").st_dev, os.stat("/proc/self/ns/net").st_ino)


def test_procfs_finds_the_same_netns_as_cri_for_every_pod_in_one_pass(cluster: LocalCluster) -> None:
    uids = {name: uid(cluster, name) for name in ("a", "b")}
    by_procfs = ProcfsFinder().find_many(uids.values())
    finder = cri_finder(cluster)
    try:
        for name, pod_uid in uids.items():
            ref = found(by_procfs[pod_uid])
            assert ref.source is NetnsSource.PROCFS and ref.path.startswith("/proc/")
            assert ref.identity == found(finder.find(pod_uid)).identity, name
    finally:
        finder.close()


def test_both_finders_keep_the_sandbox_netns_when_the_container_process_is_killed(
    cluster: LocalCluster,
) -> None:
    pod_uid = uid(cluster, "a")
    cri, procfs = cri_finder(cluster), ProcfsFinder()
    try:
        before_cri, before_procfs = found(cri.find(pod_uid)), found(procfs.find(pod_uid))
        container = f"{pod_cgroup(cluster, pod_uid)}/c"
        killed = set(leftovers.cgroup_processes(container))
        assert killed, f"no process in {container}"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        cluster.wait_for(
            "the local kubelet to restart a's container",
            lambda: bool(set(leftovers.cgroup_processes(container)) - killed),
        )
        after_cri, after_procfs = found(cri.find(pod_uid)), found(procfs.find(pod_uid))
    finally:
        cri.close()
    assert after_cri == before_cri
    assert after_procfs == before_procfs, "the sandbox's process, not a container's, names the netns"
    assert after_procfs.identity == after_cri.identity
    assert netns_of_processes(cluster, pod_uid) == {after_cri.identity}


def test_neither_finder_finds_a_deleted_pod(cluster: LocalCluster) -> None:
    cluster.apply(on_lan("gone", "192.0.2.29"))
    pod_uid = str(cluster.wait_running("gone")["gone"]["metadata"]["uid"])
    cri, procfs = cri_finder(cluster), ProcfsFinder()
    try:
        assert found(cri.find(pod_uid)).identity == found(procfs.find(pod_uid)).identity
        cluster.kubectl("delete", "pod", "gone", "--wait=true", "--timeout=60s")
        assert cri.find(pod_uid) is None
        assert procfs.find(pod_uid) is None
    finally:
        cri.close()


def test_without_a_cri_socket_the_netns_finder_falls_back_to_procfs(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    missing = CriFinder(str(tmp_path / "no-such.sock"), connect=lambda path: CriClient(path, timeout=10))
    finder = NetnsFinder(missing, ProcfsFinder())
    try:
        pod_uid = uid(cluster, "b")
        ref = found(finder.find(pod_uid))
    finally:
        finder.close()
    assert ref.source is NetnsSource.PROCFS
    assert netns_of_processes(cluster, pod_uid) == {ref.identity}
