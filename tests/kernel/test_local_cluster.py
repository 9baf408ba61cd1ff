"""The local cluster end to end: nodes, real containerd sandboxes, Multus-style networks, workloads.

One two-node cluster is shared by the module (pods are cheap, a cluster is not); side-by-side clusters
and crash recovery get clusters of their own. Every cluster is checked to leave nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster, local_cluster

from mnp.local.nodes import leftovers
from mnp.local.nodes.cri import CriClient

pytestmark = pytest.mark.kernel

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


def nads(shared_ipam: Path) -> str:
    static = {
        "cniVersion": "0.4.0",
        "type": "macvlan",
        "mode": "bridge",
        "master": "eth0",
        "capabilities": {"ips": True},
        "ipam": {"type": "static"},
    }
    host_local = {
        "cniVersion": "1.0.0",
        "name": "lan-hl",
        "plugins": [
            {
                "type": "macvlan",
                "mode": "bridge",
                "master": "eth0",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(shared_ipam),
                    "ranges": [[{"subnet": "198.51.100.0/24"}], [{"subnet": "2001:db8:b::/64"}]],
                },
            }
        ],
    }
    return "\n---\n".join(
        json.dumps(
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"config": json.dumps(config)},
            }
        )
        for name, config in (("lan-static", static), ("lan-hl", host_local))
    )


def pod(name: str, networks: Any, node: str | None = None, **spec: Any) -> str:
    annotations = {NETWORKS: networks if isinstance(networks, str) else json.dumps(networks)}
    body: dict[str, Any] = {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
        **spec,
    }
    if node:
        body["nodeName"] = node
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": body,
        }
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(nodes=2) as c:
        c.apply(nads(c.layout.root / "ipam-shared"))
        c.apply(
            "\n---\n".join(
                [
                    pod(
                        "p1",
                        [{"name": "lan-static", "ips": ["192.0.2.11/24", "2001:db8:a::11/64"]}],
                        "node-1",
                    ),
                    pod(
                        "p2", [{"name": "lan-static", "ips": ["192.0.2.12/24"]}, {"name": "lan-hl"}], "node-2"
                    ),
                    pod(
                        "p3",
                        [{"name": "lan-static", "interface": "lan0", "ips": ["2001:db8:a::13/64"]}],
                        "node-2",
                    ),
                    # No nodeName: the scheduler places it by nodeSelector. Comma form, host-local only.
                    pod("p4", "lan-hl", nodeSelector={"kubernetes.io/hostname": "node-1"}),
                ]
            )
        )
        c.wait_running("p1", "p2", "p3", "p4")
        yield c


def _link(c: LocalCluster, p: dict[str, Any], ifname: str) -> dict[str, Any]:
    proc = c.run_in(p, "ip", "-j", "addr", "show", "dev", ifname)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout)[0])


def _addresses(link: dict[str, Any]) -> list[str]:
    return [a["local"] for a in link["addr_info"] if a.get("scope") == "global"]


def test_network_status_is_written_as_multus_writes_it_field_by_field(cluster: LocalCluster) -> None:
    for name, secondary in (
        ("p1", [("default/lan-static", "net1", ["192.0.2.11", "2001:db8:a::11"])]),
        ("p2", [("default/lan-static", "net1", ["192.0.2.12"]), ("default/lan-hl", "net2", None)]),
        ("p3", [("default/lan-static", "lan0", ["2001:db8:a::13"])]),
        ("p4", [("default/lan-hl", "net1", None)]),
    ):
        p = cluster.pod(name)
        status = json.loads(p["metadata"]["annotations"][NETWORK_STATUS])
        primary = status[0]
        assert list(primary) == ["name", "interface", "ips", "mac", "default", "dns"]
        assert primary["interface"] == "eth0" and primary["default"] is True and primary["dns"] == {}
        assert primary["ips"] == [ip["ip"] for ip in p["status"]["podIPs"]]
        assert p["status"]["podIP"] == primary["ips"][0]
        assert primary["mac"] == _link(cluster, p, "eth0")["address"]
        assert len(status) == 1 + len(secondary)
        for entry, (network, ifname, ips) in zip(status[1:], secondary, strict=True):
            assert list(entry) == ["name", "interface", "ips", "mac", "dns"]
            link = _link(cluster, p, ifname)
            assert (entry["name"], entry["interface"], entry["dns"]) == (network, ifname, {})
            assert entry["mac"] == link["address"]
            assert sorted(entry["ips"]) == sorted(_addresses(link))
            if ips is not None:
                assert entry["ips"] == ips
    p2, p4 = cluster.pod("p2"), cluster.pod("p4")
    hl2 = json.loads(p2["metadata"]["annotations"][NETWORK_STATUS])[2]["ips"]
    hl4 = json.loads(p4["metadata"]["annotations"][NETWORK_STATUS])[1]["ips"]
    assert len(hl2) == len(hl4) == 2 and not set(hl2) & set(hl4), (
        "a shared host-local dataDir hands out each address once"
    )


def test_pods_are_placed_and_reported_as_kubectl_shows_them(cluster: LocalCluster) -> None:
    out = cluster.kubectl("get", "pods", "-o", "wide", "--no-headers").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in out}
    for name, node in (("p1", "node-1"), ("p2", "node-2"), ("p3", "node-2"), ("p4", "node-1")):
        p = cluster.pod(name)
        assert rows[name][1:3] == ["1/1", "Running"]
        assert rows[name][5:7] == [p["status"]["podIP"], node]
        statuses = p["status"]["containerStatuses"]
        assert statuses[0]["containerID"].startswith("containerd://") and statuses[0]["ready"] is True
        conditions = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert conditions["Ready"] == conditions["PodScheduled"] == "True"


def test_traffic_crosses_nodes_on_every_network_and_family(cluster: LocalCluster) -> None:
    p1, p2, p3, p4 = (cluster.pod(n) for n in ("p1", "p2", "p3", "p4"))
    hl4 = json.loads(p4["metadata"]["annotations"][NETWORK_STATUS])[1]["ips"]
    assert cluster.ping(p2, "192.0.2.11")  # node-2 -> node-1, IPv4, static
    assert cluster.ping(p3, "2001:db8:a::11")  # node-2 -> node-1, IPv6, on an interface named lan0
    assert cluster.ping(p1, "192.0.2.12")  # node-1 -> node-2
    for address in hl4:  # host-local network, both families, node-2 -> node-1
        assert cluster.ping(p2, address), address
    assert not cluster.ping(p1, "192.0.2.99")  # nobody there: the check can fail


def test_a_cri_client_finds_each_pod_sandbox_and_netns_by_pod_uid(cluster: LocalCluster) -> None:
    for name in ("p1", "p2", "p3", "p4"):
        p = cluster.pod(name)
        with CriClient(str(cluster.layout.node_dir(p["spec"]["nodeName"]) / "containerd.sock")) as cri:
            sandbox = cri.find_sandbox(p["metadata"]["uid"])
        assert sandbox is not None
        assert (sandbox.name, sandbox.namespace, sandbox.uid) == (name, "default", p["metadata"]["uid"])
        assert os.path.exists(sandbox.netns_path)
        assert sorted(sandbox.ips) == sorted(ip["ip"] for ip in p["status"]["podIPs"])


def test_a_killed_container_process_is_restarted(cluster: LocalCluster) -> None:
    p = cluster.pod("p1")
    before = p["status"]["containerStatuses"][0]
    cgroup = f"{cluster.layout.read_cluster().node('node-1').cgroup_root}/pod{p['metadata']['uid']}/c"
    pids = leftovers.cgroup_processes(cgroup)
    assert pids, f"no process in {cgroup}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        s = cluster.pod("p1")["status"]["containerStatuses"][0]
        return s["restartCount"] == before["restartCount"] + 1 and "running" in s["state"]

    cluster.wait_for("p1's container to be restarted", restarted)
    after = cluster.pod("p1")["status"]["containerStatuses"][0]
    assert after["containerID"] != before["containerID"]
    assert after["lastState"]["terminated"]["exitCode"] == 137
    assert leftovers.cgroup_processes(cgroup) and not set(leftovers.cgroup_processes(cgroup)) & set(pids)


def test_deleting_a_pod_releases_its_addresses_links_and_sandbox(cluster: LocalCluster) -> None:
    cluster.apply(pod("gone", "lan-hl", "node-2"))
    p = cluster.wait_running("gone")["gone"]
    netns = cluster.netns_of(p)
    address = json.loads(p["metadata"]["annotations"][NETWORK_STATUS])[1]["ips"][0]
    lease = cluster.layout.root / "ipam-shared" / "lan-hl" / address
    assert lease.exists()
    cluster.kubectl("delete", "pod", "gone", "--wait=true", "--timeout=60s")
    assert not lease.exists(), "host-local still holds the address"
    assert not os.path.exists(netns), "the pod netns (and its links) outlived the pod"
    with CriClient(str(cluster.layout.node_dir("node-2") / "containerd.sock")) as cri:
        assert cri.find_sandbox(p["metadata"]["uid"]) is None
    assert not cluster.layout.pod_dir("node-2", "default", "gone", p["metadata"]["uid"]).exists()


def test_a_daemonset_runs_one_pod_per_node(cluster: LocalCluster) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "every", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "every"}},
            "template": {
                "metadata": {"labels": {"app": "every"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
            },
        },
    }
    cluster.apply(json.dumps(ds))

    def one_per_node() -> bool:
        pods = cluster.kubectl("get", "pods", "-l", "app=every", "-o", "json").stdout
        items = json.loads(pods)["items"]
        running = [p for p in items if p["status"].get("phase") == "Running"]
        return len(running) == 2 and {p["spec"]["nodeName"] for p in running} == {"node-1", "node-2"}

    try:
        cluster.wait_for("one running DaemonSet pod per node", one_per_node)
    finally:
        cluster.kubectl("delete", "daemonset", "every", "--wait=true", "--timeout=60s", check=False)


def test_a_host_network_pod_lists_pods_with_in_cluster_config(cluster: LocalCluster) -> None:
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": "default"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "lister", "namespace": "default"},
        },
    ]
    script = (
        "from kubernetes import client, config; config.load_incluster_config(); "
        "print(sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod('default').items))"
    )
    lister = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lister", "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "serviceAccountName": "lister",
            "restartPolicy": "Never",
            "nodeName": "node-1",
            "containers": [{"name": "c", "image": "python", "command": [sys.executable, "-c", script]}],
        },
    }
    cluster.apply("\n---\n".join(json.dumps(o) for o in [*rbac, lister]))

    def finished() -> bool:
        return cluster.pod("lister").get("status", {}).get("phase") in ("Succeeded", "Failed")

    cluster.wait_for("the lister pod to finish", finished)
    p = cluster.pod("lister")
    log = cluster.layout.container_log(
        "node-1", "default", "lister", p["metadata"]["uid"], "c", 0
    ).read_text()
    assert p["status"]["phase"] == "Succeeded", log
    assert "'p1', 'p2', 'p3', 'p4'" in log
    assert p["status"]["podIP"] == p["status"]["hostIP"]
    cluster.kubectl("delete", "pod", "lister", "--wait=true", "--timeout=60s")


def test_two_clusters_run_side_by_side_with_the_same_addresses(cluster: LocalCluster) -> None:
    with local_cluster(nodes=1) as other:
        other.apply(nads(other.layout.root / "ipam-shared"))
        other.apply(pod("p1", [{"name": "lan-static", "ips": ["192.0.2.11/24"]}], "node-1"))
        other.apply(pod("p9", [{"name": "lan-static", "ips": ["192.0.2.12/24"]}], "node-1"))
        mine = other.wait_running("p1", "p9")
        assert other.ping(mine["p9"], "192.0.2.11")
        assert other.layout.prefix != cluster.layout.prefix
        # The first cluster is untouched: same names, same addresses, its own pods still answer.
        assert cluster.ping(cluster.pod("p2"), "192.0.2.11")
        assert {p["metadata"]["name"] for p in other.get("pods")["items"]} == {"p1", "p9"}
    assert cluster.ping(cluster.pod("p2"), "192.0.2.11")


def test_down_after_kill_9_of_containerd_a_node_process_and_the_api_server_leaves_nothing() -> None:
    with local_cluster(nodes=2) as c:
        c.apply(nads(c.layout.root / "ipam-shared"))
        c.apply(pod("a", [{"name": "lan-static", "ips": ["192.0.2.21/24"]}], "node-1"))
        c.apply(pod("b", "lan-hl", "node-2"))
        c.wait_running("a", "b")
        victims = [
            int((c.layout.node_dir("node-1") / "containerd.pid").read_text()),
            int(c.layout.pid_file("node-2").read_text()),
            int(c.layout.pid_file("apiserver").read_text()),
        ]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        for pid in victims:
            leftovers.kill_and_wait(pid, signal.SIGKILL, 10)
        # local_cluster's exit runs `down` and asserts nothing of the cluster is left.


def test_a_pod_naming_a_missing_nad_waits_with_an_event_and_starts_when_the_nad_appears(
    cluster: LocalCluster,
) -> None:
    cluster.apply(pod("late", "lan-late", "node-1"))

    def reported() -> bool:
        conditions = {c["type"]: c for c in cluster.pod("late").get("status", {}).get("conditions") or []}
        return conditions.get("Ready", {}).get("reason") == "NetworkAttachmentDefinitionMissing"

    cluster.wait_for("the missing NAD to be reported on the pod", reported)
    p = cluster.pod("late")
    assert p["status"]["phase"] == "Pending"
    assert "default/lan-late" in p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    events = cluster.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=late", "-o", "json"
    ).stdout
    assert any(e["reason"] == "NetworkAttachmentDefinitionMissing" for e in json.loads(events)["items"])
    late = json.loads(nads(cluster.layout.root / "ipam-shared").split("\n---\n")[1])
    late["metadata"]["name"] = "lan-late"
    cluster.apply(json.dumps(late))
    cluster.wait_running("late")
    status = json.loads(cluster.pod("late")["metadata"]["annotations"][NETWORK_STATUS])
    assert [e["name"] for e in status[1:]] == ["default/lan-late"]
    cluster.kubectl("delete", "pod", "late", "--wait=true", "--timeout=60s")


def test_deletion_is_graceful_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    cluster: LocalCluster,
) -> None:
    stubborn = json.loads(pod("stubborn", "lan-hl", "node-2", terminationGracePeriodSeconds=2))
    stubborn["spec"]["containers"][0]["command"] = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
    cluster.apply(json.dumps(stubborn))
    p = cluster.wait_running("stubborn")["stubborn"]
    cluster.kubectl("delete", "pod", "stubborn", "--wait=false")
    terminating = cluster.pod("stubborn")
    assert (
        terminating["metadata"]["deletionTimestamp"]
        and terminating["metadata"]["deletionGracePeriodSeconds"] == 2
    )
    cluster.wait_gone("pod", "stubborn")
    cgroup = f"{cluster.layout.read_cluster().node('node-2').cgroup_root}/pod{p['metadata']['uid']}"
    assert leftovers.cgroup_processes(cgroup) == []


def test_a_host_path_resolves_to_the_node_so_a_pod_reaches_its_own_nodes_containerd(
    cluster: LocalCluster,
) -> None:
    script = (
        "from mnp.local.nodes.cri import CriClient; "
        "c = CriClient('/run/containerd/containerd.sock'); "
        "print(sorted(s.name for s in c.list_sandboxes()))"
    )
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cri-user", "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "nodeName": "node-2",
            "containers": [
                {
                    "name": "c",
                    "image": "agent",
                    "command": [sys.executable, "-c", script],
                    "volumeMounts": [{"name": "cri", "mountPath": "/run/containerd/containerd.sock"}],
                }
            ],
            "volumes": [
                {"name": "cri", "hostPath": {"path": "/run/containerd/containerd.sock", "type": "Socket"}}
            ],
        },
    }
    cluster.apply(json.dumps(body))
    cluster.wait_for(
        "cri-user to finish",
        lambda: cluster.pod("cri-user")["status"].get("phase") in ("Succeeded", "Failed"),
    )
    p = cluster.pod("cri-user")
    log = cluster.layout.container_log(
        "node-2", "default", "cri-user", p["metadata"]["uid"], "c", 0
    ).read_text()
    assert p["status"]["phase"] == "Succeeded", log
    assert "'p2', 'p3'" in log and "'p1'" not in log  # node-2's sandboxes, not node-1's
    # containerd keeps shim sockets in /run/containerd/s, but the socket path exists only in the pod.
    assert not Path("/run/containerd/containerd.sock").exists(), "the mount point was made on the host"
    cluster.kubectl("delete", "pod", "cri-user", "--wait=true", "--timeout=60s")


def test_a_deployment_keeps_its_replicas_running_across_nodes(cluster: LocalCluster) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
            },
        },
    }
    cluster.apply(json.dumps(deployment))

    def ready(count: int) -> bool:
        d = cluster.get("deployment", "web")
        return d.get("status", {}).get("readyReplicas") == count and d["status"].get("replicas") == count

    try:
        cluster.wait_for("3 ready replicas", lambda: ready(3))
        items = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
        assert {p["spec"]["nodeName"] for p in items} == {"node-1", "node-2"}
        victim = items[0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", victim, "--wait=true", "--timeout=60s")
        cluster.wait_for("the deleted replica to be replaced", lambda: ready(3))
        # Not `kubectl scale`: the local API server has no scale subresource yet.
        cluster.kubectl("patch", "deployment", "web", "--type=merge", "-p", '{"spec": {"replicas": 1}}')
        cluster.wait_for("1 ready replica", lambda: ready(1))
    finally:
        cluster.kubectl("delete", "deployment", "web", "--wait=true", "--timeout=60s", check=False)


def test_each_node_renews_its_lease_and_reports_ready(cluster: LocalCluster) -> None:
    leases = {
        lease["metadata"]["name"]: lease["spec"]
        for lease in cluster.get("lease", namespace="kube-node-lease")["items"]
    }
    assert set(leases) >= {"node-1", "node-2"}
    assert leases["node-1"]["holderIdentity"] == "node-1" and leases["node-1"]["leaseDurationSeconds"] == 40
    first = leases["node-1"]["renewTime"]
    cluster.wait_for(
        "node-1's lease to be renewed",
        lambda: cluster.get("lease", "node-1", "kube-node-lease")["spec"]["renewTime"] != first,
        timeout=30,
    )
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    for name in ("node-1", "node-2"):
        status = nodes[name]["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        assert {"type": "Hostname", "address": name} in status["addresses"]
        assert status["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.")
        assert nodes[name]["metadata"]["labels"]["kubernetes.io/hostname"] == name
