"""`mnp local` user verbs: the pure parts (manifests, tables, convergence, status), then each verb as a
user runs it (`mnp.cli.main`) against the real local API server, the test playing the kubelet where a
verb depends on one (pod status, finalizers, the pod's netns).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnp.cli import main
from mnp.kube.client import Client
from mnp.kube.resources import PODS, Resource
from mnp.local.apiserver.server import start
from mnp.local.ctl import pods
from mnp.local.ctl.converge import decide, pod_state
from mnp.local.ctl.delete import delete_manifests
from mnp.local.ctl.kubeapi import KubeClusterApi
from mnp.local.ctl.manifests import apply_order, delete_order, load_manifests, with_namespace
from mnp.local.ctl.status import Component, Facts, report
from mnp.local.ctl.table import format_table
from mnp.local.layout import ClusterConfig, Layout, NodeConfig

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = [
    REPO / "crds",
    REPO / "tests" / "apiserver" / "manifests" / "upstream" / "network-attachment-definitions.yaml",
]
CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")
NODES = Resource("", "v1", "nodes", False, "Node")


def doc(kind: str, name: str, ns: str | None = None, api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def pod_doc(name: str, ns: str = "default", node: str = "node-1", **meta: Any) -> dict[str, Any]:
    obj = doc("Pod", name, ns, spec={"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]})
    obj["metadata"].update(meta)
    return obj


def running_status(*containers: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "phase": "Running",
        "containerStatuses": [
            {"name": c, "started": True, "ready": True, "restartCount": restarts, "state": {"running": {}}}
            for c in containers
        ],
    }


# --- manifests -----------------------------------------------------------------------------------------


def test_manifests_come_from_dirs_in_sorted_order_lists_unpacked_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "b.yaml").write_text(yaml.safe_dump_all([doc("ConfigMap", "b1"), doc("ConfigMap", "b2")]))
    (d / "a.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [doc("ConfigMap", "a1")]})
    )
    (d / "notes.txt").write_text("not a manifest")
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(doc("Secret", "s"))))
    names = [m.name for m in load_manifests([str(d), "-"])]
    assert names == ["a1", "b1", "b2", "s"]


def test_crds_come_first_then_namespaces_then_the_rest_in_file_order_and_delete_reverses_it() -> None:
    ms = load_from(
        [
            doc("ConfigMap", "c1", "ns1"),
            doc("Namespace", "ns1"),
            doc("MultiNetworkPolicy", "p", "ns1", "k8s.cni.cncf.io/v1beta1"),
            doc("CustomResourceDefinition", "x.example.com", None, "apiextensions.k8s.io/v1"),
            doc("ConfigMap", "c2", "ns1"),
        ]
    )
    assert [m.name for m in apply_order(ms)] == ["x.example.com", "ns1", "c1", "p", "c2"]
    assert [m.name for m in delete_order(ms)] == ["c2", "p", "c1", "ns1", "x.example.com"]


def test_a_crd_manifest_names_the_api_versions_it_serves() -> None:
    [crd] = load_manifests([str(REPO / "crds" / "multi-networkpolicies.yaml")])
    assert crd.is_crd
    assert crd.crd_serves() == {("k8s.cni.cncf.io/v1beta1", "MultiNetworkPolicy")}  # v1beta2 is not served


def test_a_namespaced_object_without_a_namespace_goes_to_default_and_a_cluster_one_keeps_none() -> None:
    [cm, ns] = load_from([doc("ConfigMap", "c"), doc("Namespace", "n", "stray")])
    assert with_namespace(cm, True).namespace == "default"
    assert cm.namespace == ""  # the manifest read is not changed
    assert with_namespace(ns, False).namespace == ""


def load_from(objs: list[dict[str, Any]]) -> list[Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(yaml.safe_dump_all(objs))
        f.flush()
        return load_manifests([f.name])


# --- tables --------------------------------------------------------------------------------------------

TABLE = {
    "columnDefinitions": [
        {"name": "Name", "type": "string", "priority": 0},
        {"name": "Ready", "type": "string", "priority": 0},
        {"name": "IP", "type": "string", "priority": 1},
    ],
    "rows": [
        {"cells": ["web", "1/1", "10.0.0.1"], "object": {"metadata": {"namespace": "a"}}},
        {"cells": ["database", "0/1", None], "object": {"metadata": {"namespace": "bb"}}},
    ],
}


def test_a_table_shows_priority_zero_columns_aligned_like_kubectl() -> None:
    assert format_table(TABLE) == "NAME       READY\nweb        1/1\ndatabase   0/1\n"


def test_a_wide_table_for_all_namespaces_adds_the_namespace_and_every_column() -> None:
    assert format_table(TABLE, wide=True, with_namespace=True) == (
        "NAMESPACE   NAME       READY   IP\na           web        1/1     10.0.0.1\nbb          database   0/1     <none>\n"
    )


def test_an_empty_table_prints_nothing() -> None:
    assert format_table({**TABLE, "rows": []}) == ""


# --- convergence ---------------------------------------------------------------------------------------

NETS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
ATTACHED = json.dumps([{"name": "default/net-a", "interface": "net1", "ips": ["192.0.2.1"]}])


def pod_obj(
    status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": "p", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main"}], **spec},
        "status": status if status is not None else running_status("main"),
    }


WAITING_FOR_CONFIG = {
    "phase": "Pending",
    "containerStatuses": [
        {
            "name": "main",
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "no secret"}},
        }
    ],
}
NAD_MISSING = {
    "phase": "Pending",
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "NetworkAttachmentDefinitionMissing",
            "message": "default/net-x",
        }
    ],
}

POD_CASES = [
    ("a running pod with started containers and no networks", pod_obj(), None, False),
    ("a pending pod waits", pod_obj({"phase": "Pending"}), "phase Pending", False),
    ("a pod with no phase yet waits", pod_obj({}), "phase Pending", False),
    (
        "a container not started waits",
        pod_obj(
            {
                "phase": "Running",
                "containerStatuses": [{"name": "main", "started": False, "state": {"waiting": {}}}],
            }
        ),
        "container main not started",
        False,
    ),
    ("a container without status waits", pod_obj({"phase": "Running"}), "container main not started", False),
    (
        "requested networks without network-status wait",
        pod_obj(annotations={NETS: "net-a"}),
        "networks not attached yet (no network-status)",
        False,
    ),
    (
        "a network missing from network-status waits",
        pod_obj(annotations={NETS: "net-a,net-b", STATUS: ATTACHED}),
        "networks not attached yet: default/net-b@net2",
        False,
    ),
    ("every requested network attached", pod_obj(annotations={NETS: "net-a", STATUS: ATTACHED}), None, False),
    (
        "a hostNetwork pod has no networks to wait for",
        pod_obj(annotations={NETS: "net-a"}, hostNetwork=True),
        None,
        False,
    ),
    (
        "a terminating pod waits",
        {
            **pod_obj(),
            "metadata": {"namespace": "default", "name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
        },
        "terminating",
        False,
    ),
    ("a succeeded pod is done", pod_obj({"phase": "Succeeded"}), None, False),
    ("a failed pod is the user's", pod_obj({"phase": "Failed", "reason": "Error"}), "Failed: Error", True),
    (
        "a missing NAD is the user's",
        pod_obj(NAD_MISSING),
        "NetworkAttachmentDefinitionMissing: default/net-x",
        True,
    ),
    (
        "a container config error is the user's",
        pod_obj(WAITING_FOR_CONFIG),
        "container main: CreateContainerConfigError: no secret",
        True,
    ),
]


@pytest.mark.parametrize(("pod", "why", "users"), [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_a_pod_is_converged_waited_for_or_left_to_the_user(
    pod: dict[str, Any], why: str | None, users: bool
) -> None:
    assert pod_state(pod) == (why, users)


def obj(name: str, generation: int, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": generation}, "status": status}


APPLIED = {"type": "Applied", "status": "True", "reason": "Applied"}


def test_policies_and_rulesets_converge_once_observed_at_their_generation_and_applied() -> None:
    policies = [
        obj("seen", 2, {"observedGeneration": 2}),
        obj("old", 3, {"observedGeneration": 2}),
        obj("new", 1, {}),
    ]
    rulesets = [
        obj("ok", 1, {"observedGeneration": 1, "conditions": [APPLIED]}),
        obj(
            "failed",
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    {"type": "Applied", "status": "False", "reason": "NftError", "message": "boom"}
                ],
            },
        ),
        obj("stale", 2, {"observedGeneration": 1, "conditions": [APPLIED]}),
    ]
    state = decide([], policies, rulesets)
    assert [str(u) for u in state.waiting] == [
        "multinetworkpolicy ns/new: not observed yet",
        "multinetworkpolicy ns/old: observed generation 2, current 3",
        "podnetworkruleset ns/failed: Applied=False NftError: boom",
        "podnetworkruleset ns/stale: observed generation 1, current 2",
    ]
    assert not state.converged


def test_a_pod_the_user_must_fix_is_named_but_does_not_block() -> None:
    state = decide([pod_obj(NAD_MISSING), pod_obj()], None, None)
    assert state.converged
    assert [u.ref for u in state.user_must_fix] == ["default/p"]


# --- status --------------------------------------------------------------------------------------------


def test_status_is_ok_only_with_the_apiserver_reachable_components_running_and_nodes_ready() -> None:
    up = Facts(
        None,
        (Component("controller", 12, True),),
        ("node-1",),
        {"node-1": "True"},
        {"Running": 2, "Pending": 1},
    )
    text, ok = report(up, "/tmp/c")
    assert ok
    assert "controller  running (pid 12)" in text.replace("   ", "  ")
    assert "pods: 1 Pending, 2 Running" in text
    assert not report(Facts(None, (Component("node-1", 13, False),), ("node-1",), {"node-1": "True"}), "/c")[
        1
    ]
    assert not report(Facts(None, (), ("node-1", "node-2"), {"node-1": "True"}), "/c")[1]
    down_text, down_ok = report(Facts("connection refused", (), ("node-1",)), "/c")
    assert not down_ok and "unreachable: connection refused" in down_text
    none_text, none_ok = report(Facts(None, (), None), "/c")
    assert not none_ok and "mnp local up --dir /c" in none_text


# --- pods: refs, logs paths, exec argv -----------------------------------------------------------------


def test_pod_refs_default_to_the_default_namespace_and_reject_extra_slashes() -> None:
    assert str(pods.parse_pod_ref("web")) == "default/web"
    assert str(pods.parse_pod_ref("ns/web")) == "ns/web"
    with pytest.raises(ValueError):
        pods.parse_pod_ref("a/b/c")


def test_exec_enters_the_pod_netns_and_a_host_network_pod_runs_directly() -> None:
    assert pods.exec_argv("/run/netns/x", ["ip", "a"]) == ["nsenter", "--net=/run/netns/x", "--", "ip", "a"]
    assert pods.exec_argv(None, ["ip", "a"]) == ["ip", "a"]


# --- against the local API server ----------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[Layout]:
    """A state dir whose API server runs in this process (DIR/api), as `mnp local up` would start it."""
    root = Path(tempfile.mkdtemp(prefix="mnpctl", dir="/tmp"))
    layout = Layout.at(root)
    layout.api_dir.mkdir(parents=True)
    running = start(layout.api_dir, "127.0.0.1:0")
    try:
        yield layout
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def mnp(layout: Layout, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["local", *args, "--dir", str(layout.root)])
    out, err = capsys.readouterr()
    return code, out, err


def with_client(layout: Layout, fn: Callable[[Client], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with await Client.from_kubeconfig(layout.kubeconfig) as client:
            return await fn(client)

    return asyncio.run(run())


def write(tmp_path: Path, name: str, objs: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(objs))
    return str(path)


def applied(layout: Layout, tmp_path: Path, objs: list[dict[str, Any]], *more: Path) -> str:
    """Write `objs` to a file and `mnp local apply` it (and the paths `more`); the file's path."""
    f = write(tmp_path, "applied.yaml", objs)
    assert (
        main(
            ["local", "apply", "-f", f, *[a for p in more for a in ("-f", str(p))], "--dir", str(layout.root)]
        )
        == 0
    )
    return f


def test_apply_prints_like_kubectl_and_a_label_removed_from_the_manifest_is_removed(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = doc("ConfigMap", "settings", data={"a": "1"})
    cm["metadata"]["labels"] = {"app": "web", "tier": "front"}
    f = write(tmp_path, "cm.yaml", [doc("Namespace", "team"), cm])
    code, out, err = mnp(cluster, capsys, "apply", "-f", f)
    assert (code, err) == (0, "")
    assert out == "namespace/team serverside-applied\nconfigmap/settings serverside-applied\n"

    del cm["metadata"]["labels"]["tier"]
    del cm["data"]
    f = write(tmp_path, "cm.yaml", [cm])
    assert mnp(cluster, capsys, "apply", "-f", f)[0] == 0
    stored = with_client(cluster, lambda c: c.get(CONFIGMAPS, "settings", "default"))
    assert stored["metadata"]["labels"] == {"app": "web"}
    assert not stored.get("data")


def test_apply_installs_crds_and_their_objects_in_one_go(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = doc("MultiNetworkPolicy", "deny", "default", "k8s.cni.cncf.io/v1beta1", spec={"podSelector": {}})
    nad = doc("NetworkAttachmentDefinition", "net-a", "default", "k8s.cni.cncf.io/v1", spec={"config": "{}"})
    f = write(tmp_path, "objs.yaml", [policy, nad])
    code, out, err = mnp(cluster, capsys, "apply", "-f", f, *[a for p in CRD_FILES for a in ("-f", str(p))])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [
        "customresourcedefinition.apiextensions.k8s.io/multi-networkpolicies.k8s.cni.cncf.io serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/podnetworkrulesets.mnp.dev serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/network-attachment-definitions.k8s.cni.cncf.io serverside-applied",
    ]
    assert lines[3:] == [
        "multinetworkpolicy.k8s.cni.cncf.io/deny serverside-applied",
        "networkattachmentdefinition.k8s.cni.cncf.io/net-a serverside-applied",
    ]


def test_apply_reports_a_refused_change_and_still_applies_the_rest(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied(cluster, tmp_path, [pod_doc("web")])
    changed = pod_doc("web")
    changed["spec"]["containers"][0]["command"] = ["sleep", "1"]
    f = write(tmp_path, "pod.yaml", [changed, doc("ConfigMap", "after")])
    code, out, err = mnp(cluster, capsys, "apply", "-f", f)
    assert code == 1
    assert out == "configmap/after serverside-applied\n"
    [line] = err.splitlines()
    assert line.startswith(f"error: {f}#1: pod/web: ") and "Forbidden" in line


def test_apply_of_an_unknown_kind_says_to_install_its_crd(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path, "x.yaml", [doc("Widget", "w", "default", "example.com/v1")])
    code, _, err = mnp(cluster, capsys, "apply", "-f", f)
    assert code == 1
    assert "does not serve kind 'Widget'" in err and "CustomResourceDefinition" in err


def test_get_prints_one_object_a_list_names_and_tables_under_any_name_of_the_kind(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied(
        cluster,
        tmp_path,
        [doc("Namespace", "other"), pod_doc("a"), pod_doc("b"), pod_doc("c", "other")],
        *CRD_FILES,
    )

    code, out, _ = mnp(cluster, capsys, "get", "po", "a", "-o", "yaml")
    one = yaml.safe_load(out)
    assert code == 0 and (one["kind"], one["metadata"]["name"]) == ("Pod", "a")
    assert "managedFields" not in one["metadata"]

    code, out, _ = mnp(cluster, capsys, "get", "Pod", "-o", "json")
    listed = json.loads(out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [("Pod", "a"), ("Pod", "b")]

    assert mnp(cluster, capsys, "get", "pods", "-A", "-o", "name")[1].split() == ["pod/a", "pod/b", "pod/c"]
    for name in ("pnr", "multi-policy", "net-attach-def", "podnetworkrulesets.mnp.dev"):
        code, out, err = mnp(cluster, capsys, "get", name, "-o", "json")
        assert (code, json.loads(out)["items"]) == (0, []), (name, err)

    code, out, err = mnp(cluster, capsys, "get", "pod", "-n", "other")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["c"]
    code, out, _ = mnp(cluster, capsys, "get", "pod", "c", "-n", "other", "-o", "wide")
    assert out.splitlines()[0].split()[:2] == ["NAME", "READY"] and "NODE" in out.splitlines()[0]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["c"]
    assert mnp(cluster, capsys, "get", "pod", "c", "-n", "other", "-o", "name")[1] == "pod/c\n"
    code, out, _ = mnp(cluster, capsys, "get", "pods", "-A")
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["NAMESPACE", "NAME"],
        ["default", "a"],
        ["default", "b"],
        ["other", "c"],
    ]
    code, out, err = mnp(cluster, capsys, "get", "pnr", "-A")
    assert (code, out, err) == (0, "", "No resources found.\n")


def test_get_of_a_missing_object_or_an_unknown_kind_fails_with_what_to_do(
    cluster: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = mnp(cluster, capsys, "get", "pods", "nope", "-o", "yaml")
    assert code == 1 and "pod 'nope' not found in namespace default" in err
    code, _, err = mnp(cluster, capsys, "get", "widgets")
    assert code == 1 and "no resource type 'widgets'" in err


def hold(name: str) -> dict[str, Any]:
    cm = doc("ConfigMap", name, "default")
    cm["metadata"]["finalizers"] = ["example.com/hold"]
    return cm


async def marked_for_deletion(client: Client, resource: Resource, name: str) -> None:
    while not (await client.get(resource, name, "default"))["metadata"].get("deletionTimestamp"):
        await asyncio.sleep(0.05)


def test_delete_waits_until_each_object_is_really_gone(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = applied(cluster, tmp_path, [hold("held"), doc("ConfigMap", "plain"), pod_doc("web")])
    set_pod_status(cluster, "web", running_status("main"))

    async def scenario(client: Client) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        deleting = asyncio.create_task(
            delete_manifests(KubeClusterApi(client), load_manifests([f]), out, err, 30)
        )
        # Play the kubelet (a bound pod stays Terminating until its node is done with it) and the
        # finalizer's owner, each acting only once its object is marked for deletion.
        await marked_for_deletion(client, PODS, "web")
        await marked_for_deletion(client, CONFIGMAPS, "held")
        assert not deleting.done()
        await client.delete(PODS, "web", "default", grace_period_seconds=0)
        await asyncio.sleep(0.3)
        assert not deleting.done()
        await client.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, "default")
        return await deleting, out.getvalue()

    assert with_client(cluster, scenario) == (
        0,
        "pod/web deleted\nconfigmap/plain deleted\nconfigmap/held deleted\n",
    )
    code, out, _ = mnp(cluster, capsys, "delete", "-f", f)
    assert (code, out) == (
        0,
        "pod/web already gone\nconfigmap/plain already gone\nconfigmap/held already gone\n",
    )


def test_deleting_a_namespace_waits_until_it_and_its_objects_are_gone(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = yaml.safe_dump(doc("Namespace", "team"))
    monkeypatch.setattr("sys.stdin", io.StringIO(namespace))
    assert mnp(cluster, capsys, "apply", "-f", "-")[1] == "namespace/team serverside-applied\n"
    applied(cluster, tmp_path, [doc("ConfigMap", "c", "team")])
    monkeypatch.setattr("sys.stdin", io.StringIO(namespace))
    assert mnp(cluster, capsys, "delete", "-f", "-")[:2] == (0, "namespace/team deleted\n")
    assert mnp(cluster, capsys, "get", "namespace", "team", "-o", "name")[0] == 1
    assert mnp(cluster, capsys, "get", "cm", "-n", "team", "-o", "name")[1] == ""


def test_delete_times_out_naming_what_is_still_there(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = applied(cluster, tmp_path, [hold("stuck")])
    code, _, err = mnp(cluster, capsys, "delete", "-f", f, "--timeout", "0.5")
    assert code == 1
    assert "still there after 0.5s: configmap/stuck -n default" in err
    with_client(
        cluster, lambda c: c.patch(CONFIGMAPS, "stuck", {"metadata": {"finalizers": None}}, "default")
    )


def test_status_names_nodes_and_pods_and_fails_when_a_node_is_not_ready(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = tuple(NodeConfig(n, f"x-{n}", (), (), "/x") for n in ("node-1", "node-2"))
    cluster.cluster_file.write_text(ClusterConfig("x", "x-fabric", (), nodes).to_json())
    applied(cluster, tmp_path, [doc("Node", "node-1"), doc("Node", "node-2"), pod_doc("a")])

    async def ready(client: Client, node: str, status: str) -> None:
        condition = {"type": "Ready", "status": status, "reason": "Test"}
        await client.patch_status(NODES, node, {"status": {"conditions": [condition]}})

    with_client(cluster, lambda c: ready(c, "node-1", "True"))
    code, out, _ = mnp(cluster, capsys, "status")
    assert code == 1
    assert [line.split() for line in out.splitlines() if line.startswith("node-")] == [
        ["node-1", "True"],
        ["node-2", "Unknown"],
    ]
    assert "pods: 1 Pending" in out
    with_client(cluster, lambda c: ready(c, "node-2", "True"))
    assert mnp(cluster, capsys, "status")[0] == 0

    cluster.pid_file("controller").parent.mkdir(parents=True)
    cluster.pid_file("controller").write_text(f"{os.getpid()}\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    cluster.pid_file("node-1").write_text(f"{dead.pid}\n")
    code, out, _ = mnp(cluster, capsys, "status")
    assert code == 1
    rows = [line.split() for line in out.splitlines()]
    assert ["controller", "running", "(pid", f"{os.getpid()})"] in rows
    assert ["node-1", "not", "running"] in rows


def test_verbs_on_a_dir_without_a_cluster_say_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = Layout.at(tempfile.mkdtemp(prefix="mnpctl", dir="/tmp"))
    try:
        for verb in (["get", "pods"], ["wait"], ["kubeconfig"], ["status"]):
            code, out, err = mnp(empty, capsys, *verb)
            assert code == 1, verb
            assert f"mnp local up --dir {empty.root}" in out + err, verb
    finally:
        shutil.rmtree(empty.root)


def test_a_verb_against_a_stopped_api_server_says_to_check_the_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = Layout.at(tempfile.mkdtemp(prefix="mnpctl", dir="/tmp"))
    try:
        layout.api_dir.mkdir()
        start(layout.api_dir, "127.0.0.1:0").stop()
        code, _, err = mnp(layout, capsys, "get", "pods")
        assert code == 1
        assert (
            err.startswith("error: ") and f"is the cluster up? `mnp local status --dir {layout.root}`" in err
        )
    finally:
        shutil.rmtree(layout.root)


def test_an_unreadable_manifest_fails_before_anything_is_applied(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good.yaml", [doc("ConfigMap", "c")])
    code, out, err = mnp(cluster, capsys, "apply", "-f", good, "-f", str(tmp_path / "missing.yaml"))
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and "missing.yaml" in err
    code, out, err = mnp(
        cluster,
        capsys,
        "apply",
        "-f",
        write(tmp_path, "noname.yaml", [{"apiVersion": "v1", "kind": "ConfigMap"}]),
    )
    assert code == 1 and "metadata.name" in err


def set_pod_status(layout: Layout, name: str, status: dict[str, Any], ns: str = "default") -> None:
    with_client(layout, lambda c: c.patch_status(PODS, name, {"status": status}, ns))


def test_wait_times_out_naming_the_pod_that_is_not_running_and_returns_once_it_is(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied(cluster, tmp_path, [pod_doc("ready"), pod_doc("slow"), pod_doc("broken")])
    set_pod_status(cluster, "ready", running_status("main"))
    set_pod_status(cluster, "broken", NAD_MISSING)
    code, _, err = mnp(cluster, capsys, "wait", "--timeout", "0.5")
    assert code == 1
    assert "not waiting for pod default/broken: NetworkAttachmentDefinitionMissing" in err
    assert "  pod default/slow: phase Pending" in err.splitlines()
    assert "default/ready" not in err
    set_pod_status(cluster, "slow", running_status("main"))
    code, out, _ = mnp(cluster, capsys, "wait", "--timeout", "10")
    assert (code, out) == (0, "converged\n")


def test_wait_covers_policies_and_rulesets_once_their_crds_are_served(
    cluster: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mnp(cluster, capsys, "wait", "--timeout", "5")[:2] == (
        0,
        "converged\n",
    )  # no CRDs: nothing to wait for
    policy = doc("MultiNetworkPolicy", "deny", "default", "k8s.cni.cncf.io/v1beta1", spec={"podSelector": {}})
    applied(cluster, tmp_path, [policy], *CRD_FILES)
    code, _, err = mnp(cluster, capsys, "wait", "--timeout", "0.2")
    assert code == 1 and "  multinetworkpolicy default/deny: not observed yet" in err.splitlines()
    mnps = Resource("k8s.cni.cncf.io", "v1beta1", "multi-networkpolicies", True, "MultiNetworkPolicy")
    with_client(
        cluster, lambda c: c.patch_status(mnps, "deny", {"status": {"observedGeneration": 1}}, "default")
    )
    assert mnp(cluster, capsys, "wait", "--timeout", "5")[0] == 0


def test_kubeconfig_prints_the_path_kubectl_needs(
    cluster: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mnp(cluster, capsys, "kubeconfig")[:2] == (0, f"{cluster.kubeconfig}\n")


def test_logs_print_the_current_run_or_the_previous_one(
    cluster: Layout, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    applied(cluster, tmp_path, [pod_doc("web")])
    set_pod_status(cluster, "web", running_status("main", restarts=1))
    uid = with_client(cluster, lambda c: c.get(PODS, "web", "default"))["metadata"]["uid"]
    for restart in (0, 1):
        path = cluster.container_log("node-1", "default", "web", uid, "main", restart)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"run {restart}\n".encode())
    capsysbinary.readouterr()
    assert main(["local", "logs", "default/web", "--dir", str(cluster.root)]) == 0
    assert capsysbinary.readouterr().out == b"run 1\n"
    assert main(["local", "logs", "web", "-c", "main", "--previous", "--dir", str(cluster.root)]) == 0
    assert capsysbinary.readouterr().out == b"run 0\n"
    assert main(["local", "logs", "web", "-c", "other", "--dir", str(cluster.root)]) == 1
    assert b"no container 'other'" in capsysbinary.readouterr().err


@pytest.fixture
def netns(unique_prefix: str) -> Iterator[str]:
    name = f"{unique_prefix}-pod"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.kernel
def test_exec_runs_the_command_in_the_pods_netns_and_passes_its_exit_status(
    cluster: Layout, tmp_path: Path, netns: str, capfd: pytest.CaptureFixture[str]
) -> None:
    host = pod_doc("host")
    host["spec"]["hostNetwork"] = True
    applied(cluster, tmp_path, [pod_doc("web"), pod_doc("pending"), host])
    set_pod_status(cluster, "web", running_status("main"))
    uid = with_client(cluster, lambda c: c.get(PODS, "web", "default"))["metadata"]["uid"]
    asked: list[tuple[str, str]] = []

    def lookup(node: str, pod_uid: str) -> str | None:
        asked.append((node, pod_uid))
        return netns if pod_uid == uid else None

    async def enter(client: Client, name: str) -> str | None:
        return await pods.pod_netns(KubeClusterApi(client), pods.parse_pod_ref(name), None, lookup)

    path = with_client(cluster, lambda c: enter(c, "default/web"))
    assert asked == [("node-1", uid)]
    capfd.readouterr()
    code = pods.run_command(pods.exec_argv(path, ["readlink", "/proc/self/ns/net"]))
    assert code == 0
    assert capfd.readouterr().out.strip() == f"net:[{os.stat(netns).st_ino}]"
    assert pods.run_command(pods.exec_argv(path, ["sh", "-c", "exit 3"])) == 3

    with pytest.raises(pods.PodError, match="pending is Pending, not Running"):
        with_client(cluster, lambda c: enter(c, "pending"))
    set_pod_status(cluster, "pending", running_status("main"))
    with pytest.raises(pods.PodError, match="no sandbox on node-1 yet"):
        with_client(cluster, lambda c: enter(c, "pending"))
    set_pod_status(cluster, "host", running_status("main"))
    assert with_client(cluster, lambda c: enter(c, "host")) is None
    with pytest.raises(pods.PodError, match="pod default/gone not found"):
        with_client(cluster, lambda c: enter(c, "gone"))
