"""The local cluster's scheduler and workload controllers: the pure reconcilers case by case, then the
runner against the real local API server, with this test playing the kubelet (it creates Nodes, marks
pods Running and Ready through the status subresource, and finishes deletions with grace 0)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from mnp.kube import resources as kr
from mnp.kube.client import Client
from mnp.kube.errors import KubeNotFound
from mnp.local.apiserver import server as apiserver
from mnp.local.workloads import objects as ob
from mnp.local.workloads.daemonsets import reconcile_daemonset
from mnp.local.workloads.deployments import reconcile_deployment
from mnp.local.workloads.objects import Bind, Create, Delete, Patch, Record, template_hash
from mnp.local.workloads.podgc import collect_orphans
from mnp.local.workloads.replicasets import reconcile_replicaset
from mnp.local.workloads.runner import Controllers

NOW = "2026-11-25T12:00:00Z"
_uids = itertools.count(1)

# ---- builders ------------------------------------------------------------------------------------


def node(
    name: str, *, ready: bool = True, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
        },
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def template(app: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}], **spec},
    }


def owned_pod(
    owner: dict[str, Any],
    name: str,
    *,
    node_name: str = "",
    ready: bool = False,
    created: str = "2026-11-25T10:00:00Z",
    labels: dict[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "labels": labels or {"app": "web"},
            "ownerReferences": [{"uid": owner["metadata"]["uid"], "controller": True, "kind": owner["kind"]}],
            **meta,
        },
        "spec": {"nodeName": node_name} if node_name else {},
        "status": {"phase": "Running" if node_name else "Pending"},
    }
    if ready:
        pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return pod


def workload(kind: str, name: str, replicas: int | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}-{next(_uids)}",
            "generation": 1,
        },
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(), **spec},
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def unscheduled(name: str, created: str = "2026-11-25T10:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": "c"}], **spec},
        "status": {"phase": "Pending"},
    }


# ---- scheduler -----------------------------------------------------------------------------------


def test_the_scheduler_spreads_a_burst_over_the_least_loaded_nodes_ties_by_name() -> None:
    from mnp.local.workloads.scheduler import schedule

    busy = owned_pod(workload("ReplicaSet", "rs"), "busy", node_name="node-1")
    pods = [busy] + [unscheduled(f"p{i}", created=f"2026-11-25T10:00:0{i}Z") for i in range(3)]
    actions = schedule(pods, [node("node-1"), node("node-2"), node("node-3")], NOW)
    assert actions == [
        Bind("default", "p0", "node-2"),
        Bind("default", "p1", "node-3"),
        Bind("default", "p2", "node-1"),
    ]


def test_the_scheduler_honours_node_selector_affinity_readiness_and_cordons() -> None:
    from mnp.local.workloads.scheduler import schedule

    nodes = [
        node("node-1", labels={"zone": "a"}),
        node("node-2", labels={"zone": "b"}),
        node("node-3", labels={"zone": "b"}, ready=False),
        node("node-4", labels={"zone": "b"}, unschedulable=True),
    ]
    by_selector = unscheduled("sel", nodeSelector={"zone": "b"})
    by_field = unscheduled("field")
    by_field["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}
                ]
            }
        }
    }
    not_a = unscheduled("not-a")
    not_a["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}
                ]
            }
        }
    }
    actions = schedule([by_selector, by_field, not_a], nodes, NOW)
    assert set(actions) == {
        Bind("default", "sel", "node-2"),
        Bind("default", "field", "node-1"),
        Bind("default", "not-a", "node-2"),
    }


def test_a_pod_that_fits_no_node_is_reported_unschedulable_once_with_an_event() -> None:
    from mnp.local.workloads.scheduler import schedule

    pod = unscheduled("p", nodeSelector={"disk": "ssd"})
    nodes = [node("node-1"), node("node-2", ready=False)]
    actions = schedule([pod], nodes, NOW)
    patch, event = actions
    assert isinstance(patch, Patch) and patch.sub == "status"
    cond = patch.patch["status"]["conditions"][0]
    message = "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready."
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
        message,
    )
    assert event == Record("default-scheduler", pod, "Warning", "FailedScheduling", message)
    pod["status"]["conditions"] = [cond]
    assert schedule([pod], nodes, NOW) == []


def test_a_changed_reason_updates_the_condition_without_another_event() -> None:
    from mnp.local.workloads.scheduler import schedule

    pod = unscheduled("p", nodeSelector={"disk": "ssd"})
    (patch, _) = schedule([pod], [node("node-1")], NOW)
    assert isinstance(patch, Patch)
    pod["status"]["conditions"] = patch.patch["status"]["conditions"]
    (again,) = schedule([pod], [node("node-1"), node("node-2", ready=False)], NOW)
    assert (
        isinstance(again, Patch)
        and "1 node(s) were not ready" in again.patch["status"]["conditions"][0]["message"]
    )


def test_pods_being_deleted_bound_or_for_another_scheduler_are_left_alone() -> None:
    from mnp.local.workloads.scheduler import schedule

    deleting = unscheduled("deleting")
    deleting["metadata"]["deletionTimestamp"] = NOW
    other = unscheduled("other", schedulerName="my-scheduler")
    bound = owned_pod(workload("ReplicaSet", "rs"), "bound", node_name="node-1")
    assert schedule([deleting, other, bound], [node("node-1")], NOW) == []


# ---- ReplicaSet ----------------------------------------------------------------------------------


def creates(actions: list[Any]) -> list[Create]:
    return [a for a in actions if isinstance(a, Create)]


def deletes(actions: list[Any]) -> list[str]:
    return [a.name for a in actions if isinstance(a, Delete)]


def status_of(actions: list[Any]) -> dict[str, Any]:
    found = [a.patch["status"] for a in actions if isinstance(a, Patch) and a.sub == "status"]
    return found[0] if found else {}


def test_a_replicaset_creates_its_missing_pods_from_the_template_with_an_owner_reference() -> None:
    rs = workload("ReplicaSet", "web-abc", replicas=3)
    made = creates(reconcile_replicaset(rs, [owned_pod(rs, "web-abc-1")]))
    assert len(made) == 2
    meta = made[0].body["metadata"]
    assert meta["generateName"] == "web-abc-" and meta["labels"] == {"app": "web"}
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-abc",
        "uid": rs["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert made[0].owner == rs["metadata"]["uid"]


def test_scaling_down_deletes_unscheduled_then_unready_then_newest_pods_first() -> None:
    rs = workload("ReplicaSet", "rs", replicas=1)
    pods = [
        owned_pod(rs, "old-ready", node_name="n", ready=True, created="2026-11-25T09:00:00Z"),
        owned_pod(rs, "new-ready", node_name="n", ready=True, created="2026-11-25T11:00:00Z"),
        owned_pod(rs, "unready", node_name="n", created="2026-11-25T08:00:00Z"),
        owned_pod(rs, "pending"),
    ]
    assert deletes(reconcile_replicaset(rs, pods)) == ["pending", "unready", "new-ready"]


def test_pods_being_deleted_or_finished_do_not_count_and_are_replaced() -> None:
    rs = workload("ReplicaSet", "rs", replicas=2)
    going = owned_pod(rs, "going", node_name="n", ready=True, deletionTimestamp=NOW)
    done = owned_pod(rs, "done", node_name="n")
    done["status"]["phase"] = "Succeeded"
    actions = reconcile_replicaset(rs, [going, done, owned_pod(rs, "ok", node_name="n", ready=True)])
    assert len(creates(actions)) == 1 and deletes(actions) == []
    assert status_of(actions) == {
        "replicas": 1,
        "fullyLabeledReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "observedGeneration": 1,
    }


def test_a_replicaset_ignores_pods_of_other_owners_and_writes_no_unchanged_status() -> None:
    rs = workload("ReplicaSet", "rs", replicas=1)
    other = workload("ReplicaSet", "other", replicas=1)
    mine = owned_pod(rs, "mine", node_name="n", ready=True)
    rs["status"] = {
        "replicas": 1,
        "fullyLabeledReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "observedGeneration": 1,
    }
    assert reconcile_replicaset(rs, [mine, owned_pod(other, "theirs", node_name="n")]) == []


def test_a_replicaset_adopts_matching_orphans_and_releases_pods_relabelled_out_of_its_selector() -> None:
    rs = workload("ReplicaSet", "rs", replicas=2)
    orphan = owned_pod(rs, "orphan", node_name="n", ready=True)
    del orphan["metadata"]["ownerReferences"]
    orphan["metadata"]["resourceVersion"] = "7"
    relabelled = owned_pod(rs, "debug", node_name="n", ready=True, labels={"app": "debugging"})
    stranger = owned_pod(rs, "stranger", labels={"app": "db"})
    del stranger["metadata"]["ownerReferences"]
    actions = reconcile_replicaset(rs, [orphan, relabelled, stranger])
    patches = {a.name: a.patch for a in actions if isinstance(a, Patch) and a.sub == ""}
    assert patches == {
        "orphan": {"metadata": {"ownerReferences": [ob.controller_ref(rs, "ReplicaSet")]}},
        "debug": {"metadata": {"ownerReferences": None}},
    }
    assert [a for a in actions if isinstance(a, Patch) and a.name == "orphan"][0].resource_version == "7"
    assert len(creates(actions)) == 1, "the adopted pod counts, the released one does not"


# ---- Deployment ----------------------------------------------------------------------------------


def replicaset_for(deploy: dict[str, Any], actions: list[Any], uid: str) -> dict[str, Any]:
    (made,) = [a for a in creates(actions) if a.resource == kr.REPLICASETS]
    rs = copy.deepcopy(made.body)
    rs["metadata"]["uid"] = uid
    return rs


def test_a_deployment_creates_a_replicaset_named_by_its_template_hash() -> None:
    deploy = workload("Deployment", "web", replicas=3)
    actions = reconcile_deployment(deploy, [], [], NOW)
    rs = replicaset_for(deploy, actions, "rs-1")
    pod_hash = template_hash(deploy["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_a_template_change_scales_old_replicasets_down_only_once_the_new_pods_are_ready() -> None:
    deploy = workload("Deployment", "web", replicas=2)
    old_rs = replicaset_for(deploy, reconcile_deployment(deploy, [], [], NOW), "rs-old")
    old_pods = [owned_pod(old_rs, f"o{i}", node_name="n", ready=True) for i in range(2)]
    deploy["spec"]["template"] = template(image_hint="v2")
    actions = reconcile_deployment(deploy, [old_rs], old_pods, NOW)
    new_rs = replicaset_for(deploy, actions, "rs-new")
    assert new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert not [a for a in actions if isinstance(a, Patch) and a.name == old_rs["metadata"]["name"]]
    new_pods = [owned_pod(new_rs, f"n{i}", node_name="n", ready=i == 0) for i in range(2)]
    half = reconcile_deployment(deploy, [old_rs, new_rs], old_pods + new_pods, NOW)
    assert not [a for a in half if isinstance(a, Patch) and a.sub == ""]
    assert status_of(half)["updatedReplicas"] == 2 and status_of(half)["replicas"] == 4
    new_pods[1]["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    done = reconcile_deployment(deploy, [old_rs, new_rs], old_pods + new_pods, NOW)
    scaled = [a for a in done if isinstance(a, Patch) and a.sub == ""]
    assert [(a.name, a.patch) for a in scaled] == [(old_rs["metadata"]["name"], {"spec": {"replicas": 0}})]


def test_a_recreate_deployment_starts_new_pods_only_once_the_old_ones_are_gone() -> None:
    deploy = workload("Deployment", "web", replicas=2, strategy={"type": "Recreate"})
    old_rs = replicaset_for(deploy, reconcile_deployment(deploy, [], [], NOW), "rs-old")
    old_pods = [owned_pod(old_rs, f"o{i}", node_name="n", ready=True) for i in range(2)]
    deploy["spec"]["template"] = template(image_hint="v2")
    actions = reconcile_deployment(deploy, [old_rs], old_pods, NOW)
    new_rs = replicaset_for(deploy, actions, "rs-new")
    assert new_rs["spec"]["replicas"] == 0
    scaled = [(a.name, a.patch) for a in actions if isinstance(a, Patch) and a.sub == ""]
    assert scaled == [(old_rs["metadata"]["name"], {"spec": {"replicas": 0}})]
    old_rs["spec"]["replicas"] = 0
    actions = reconcile_deployment(deploy, [old_rs, new_rs], [], NOW)
    scaled = [(a.name, a.patch) for a in actions if isinstance(a, Patch) and a.sub == ""]
    assert scaled == [(new_rs["metadata"]["name"], {"spec": {"replicas": 2}})]


def test_scaled_down_replicasets_beyond_the_revision_history_limit_are_deleted_oldest_first() -> None:
    deploy = workload("Deployment", "web", replicas=1, revisionHistoryLimit=1)
    history: list[dict[str, Any]] = []
    for revision in (1, 2, 3):
        deploy["spec"]["template"] = template(image_hint=f"v{revision}")
        rs = replicaset_for(deploy, reconcile_deployment(deploy, history, [], NOW), f"rs-{revision}")
        history.append(rs)
    for rs in history[:2]:
        rs["spec"]["replicas"] = 0
    actions = reconcile_deployment(deploy, history, [], NOW)
    assert [(a.resource, a.name) for a in actions if isinstance(a, Delete)] == [
        (kr.REPLICASETS, history[0]["metadata"]["name"])
    ]


def test_deployment_status_reports_availability_and_progress() -> None:
    deploy = workload("Deployment", "web", replicas=2)
    rs = replicaset_for(deploy, reconcile_deployment(deploy, [], [], NOW), "rs-1")
    pods = [owned_pod(rs, f"p{i}", node_name="n", ready=True) for i in range(2)]
    st = status_of(reconcile_deployment(deploy, [rs], pods, NOW))
    assert {k: st[k] for k in ("observedGeneration", "replicas", "readyReplicas", "availableReplicas")} == {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


def test_scaling_a_deployment_scales_its_current_replicaset_and_says_so_in_an_event() -> None:
    deploy = workload("Deployment", "web", replicas=3)
    rs = replicaset_for(deploy, reconcile_deployment(deploy, [], [], NOW), "rs-1")
    deploy["spec"]["replicas"] = 1
    actions = reconcile_deployment(deploy, [rs], [], NOW)
    scaled = [a for a in actions if isinstance(a, Patch) and a.sub == ""]
    assert [a.patch for a in scaled] == [{"spec": {"replicas": 1}}]
    rs_name = rs["metadata"]["name"]
    assert [a for a in actions if isinstance(a, Record)] == [
        Record(
            "deployment-controller",
            deploy,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled down replica set {rs_name} from 3 to 1",
        )
    ]


# ---- DaemonSet -----------------------------------------------------------------------------------


def test_a_daemonset_places_one_pod_on_each_ready_matching_node() -> None:
    ds = workload("DaemonSet", "agent")
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    nodes = [
        node("node-1"),
        node("node-2"),
        node("node-3", ready=False),
        node("win", labels={"kubernetes.io/os": "windows"}),
    ]
    made = creates(reconcile_daemonset(ds, nodes, []))
    assert [c.body["spec"]["nodeName"] for c in made] == ["node-1", "node-2"]
    labels = made[0].body["metadata"]["labels"]
    assert labels["controller-revision-hash"] == template_hash(ds["spec"]["template"])
    assert labels["pod-template-generation"] == "1" and labels["app"] == "web"
    assert made[0].body["metadata"]["generateName"] == "agent-"


def test_a_daemonset_deletes_pods_on_gone_or_unmatched_nodes_and_duplicates() -> None:
    ds = workload("DaemonSet", "agent")
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"role": "net"}
    nodes = [node("node-1", labels={"role": "net"}), node("node-2")]
    rev = {"app": "web", "controller-revision-hash": template_hash(ds["spec"]["template"])}
    pods = [
        owned_pod(ds, "a", node_name="node-1", ready=True, created="2026-11-25T09:00:00Z", labels=rev),
        owned_pod(ds, "dup", node_name="node-1", ready=True, created="2026-11-25T10:00:00Z", labels=rev),
        owned_pod(ds, "unmatched", node_name="node-2", ready=True, labels=rev),
        owned_pod(ds, "gone", node_name="node-9", ready=True, labels=rev),
    ]
    actions = reconcile_daemonset(ds, nodes, pods)
    assert sorted(deletes(actions)) == ["dup", "gone", "unmatched"] and not creates(actions)
    st = status_of(actions)
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberMisscheduled"]) == (1, 1, 2)
    assert (st["numberReady"], st["updatedNumberScheduled"]) == (1, 1)


def test_a_daemonset_template_change_replaces_one_ready_pod_at_a_time_by_default() -> None:
    ds = workload("DaemonSet", "agent")
    nodes = [node("node-1"), node("node-2")]
    pods = [owned_pod(ds, f"p{i}", node_name=f"node-{i}", ready=True) for i in (1, 2)]
    assert deletes(reconcile_daemonset(ds, nodes, pods)) == ["p1"]
    pods[1]["status"]["conditions"] = []
    assert deletes(reconcile_daemonset(ds, nodes, pods)) == ["p2"]


def test_a_daemonset_rolls_within_max_unavailable_and_replaces_unready_outdated_pods_at_once() -> None:
    ds = workload(
        "DaemonSet",
        "agent",
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}},
    )
    nodes = [node(f"node-{i}") for i in range(1, 5)]
    pods = [owned_pod(ds, f"p{i}", node_name=f"node-{i}", ready=True) for i in range(1, 5)]
    assert deletes(reconcile_daemonset(ds, nodes, pods)) == ["p1", "p2"]
    pods[3]["status"]["conditions"] = []
    assert deletes(reconcile_daemonset(ds, nodes, pods)) == ["p4", "p1"]
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert deletes(reconcile_daemonset(ds, nodes, pods)) == []


def test_terminating_pods_on_nodes_that_are_gone_are_force_deleted() -> None:
    rs = workload("ReplicaSet", "rs")
    gone = owned_pod(rs, "gone", node_name="node-9", deletionTimestamp=NOW)
    alive = owned_pod(rs, "alive", node_name="node-1", deletionTimestamp=NOW)
    running = owned_pod(rs, "running", node_name="node-9")
    assert collect_orphans([gone, alive, running], [node("node-1")]) == [
        Delete(kr.PODS, "default", "gone", "uid-gone", grace_seconds=0)
    ]


# ---- the runner against the real local API server ------------------------------------------------

DEADLINE = 15.0


class Cluster:
    """One in-process API server, the controllers under test, and this test as every node's kubelet."""

    def __init__(self, client: Client, kubeconfig: Path) -> None:
        self.client = client
        self.kubeconfig = kubeconfig

    async def add_node(self, name: str, **labels: str) -> None:
        body = node(name, labels=labels)
        del body["metadata"]["uid"]
        made = await self.client.create(kr.NODES, {k: v for k, v in body.items() if k != "status"})
        made["status"] = body["status"]
        await self.client.replace_status(kr.NODES, made)

    async def kubelet(self) -> None:
        """Every bound pod turns Running and Ready; every Terminating pod is finished with grace 0."""
        while True:
            for pod in (await self.client.list(kr.PODS)).items:
                meta, ns, name = pod["metadata"], pod["metadata"]["namespace"], pod["metadata"]["name"]
                with contextlib.suppress(KubeNotFound):
                    if meta.get("deletionTimestamp"):
                        await self.client.delete(kr.PODS, name, ns, grace_period_seconds=0)
                    elif pod["spec"].get("nodeName") and pod.get("status", {}).get("phase") != "Running":
                        ready = {"type": "Ready", "status": "True"}
                        await self.client.patch_status(
                            kr.PODS, name, {"status": {"phase": "Running", "conditions": [ready]}}, ns
                        )
            await asyncio.sleep(0.05)

    async def pods(self, ns: str = "default", **labels: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return (await self.client.list(kr.PODS, ns, label_selector=selector)).items

    async def eventually(self, check: Callable[[], Awaitable[Any]], what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while True:
            got = await check()
            if got:
                return got
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster(*, kubelet: bool = True, lag: float = 0.0) -> AsyncIterator[Cluster]:
    """`lag` delays every pod event the controllers' informer applies, as a slow watch would."""
    with tempfile.TemporaryDirectory(prefix="mnp-workloads-") as tmp:
        running = apiserver.start(Path(tmp), "127.0.0.1:0")
        try:
            async with await Client.from_kubeconfig(Path(tmp) / "kubeconfig") as client:
                c = Cluster(client, Path(tmp) / "kubeconfig")
                controllers = Controllers(client)
                if lag:
                    apply = controllers.pods._apply

                    async def lagging(kind: str, obj: dict[str, Any]) -> None:
                        await asyncio.sleep(lag)
                        await apply(kind, obj)

                    controllers.pods._apply = lagging  # type: ignore[method-assign]
                tasks = [asyncio.create_task(controllers.run())]
                if kubelet:
                    tasks.append(asyncio.create_task(c.kubelet()))
                try:
                    yield c
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            running.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 50))


def deployment(name: str, replicas: int, version: str = "v1") -> dict[str, Any]:
    body = workload("Deployment", name, replicas=replicas)
    del body["metadata"]["uid"]
    body["spec"]["template"]["metadata"]["annotations"] = {"version": version}
    return body


def active(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_deployment_gets_its_pods_scales_down_and_replaces_a_deleted_pod() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            for n in ("node-1", "node-2"):
                await c.add_node(n)
            await c.client.create(kr.DEPLOYMENTS, deployment("web", 3), "default")

            async def available(count: int) -> Any:
                d = await c.client.get(kr.DEPLOYMENTS, "web", "default")
                st = d.get("status") or {}
                pods = await c.pods()
                return (
                    st.get("availableReplicas") == count
                    and st.get("replicas") == count
                    and st.get("observedGeneration") == d["metadata"]["generation"]
                    and len(pods) == count
                    and pods
                )

            pods = await c.eventually(lambda: available(3), "3 available replicas")
            (rs,) = (await c.client.list(kr.REPLICASETS, "default")).items
            pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
            assert rs["metadata"]["name"] == f"web-{pod_hash}"
            assert rs["status"]["readyReplicas"] == 3
            for p in pods:
                assert (
                    p["metadata"]["name"].startswith(f"web-{pod_hash}-")
                    and len(p["metadata"]["name"]) == len(f"web-{pod_hash}-") + 5
                )
                assert p["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
                assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
            assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}

            victim = pods[0]["metadata"]["name"]
            await c.client.delete(kr.PODS, victim, "default")
            await c.eventually(lambda: _replaced(c, victim, 3), "the deleted pod to be replaced by a new one")
            await c.eventually(lambda: available(3), "3 available replicas again")

            await c.client.patch(kr.DEPLOYMENTS, "web", {"spec": {"replicas": 1}}, "default")
            await c.eventually(lambda: available(1), "a scale down to 1")
            wanted = {
                ("Deployment", "ScalingReplicaSet"),
                ("ReplicaSet", "SuccessfulCreate"),
                ("ReplicaSet", "SuccessfulDelete"),
            }

            async def reported() -> bool:
                events = (await c.client.list(kr.EVENTS, "default")).items
                return wanted <= {(e["involvedObject"]["kind"], e["reason"]) for e in events}

            await c.eventually(reported, "Events for the scaling and the pods")

    run(scenario)


async def _replaced(c: Cluster, victim: str, count: int) -> bool:
    names = [p["metadata"]["name"] for p in active(await c.pods())]
    return victim not in names and len(names) == count


def test_pods_the_informer_has_not_shown_yet_are_not_created_twice() -> None:
    async def scenario() -> None:
        async with cluster(lag=0.1) as c:
            await c.add_node("node-1")
            await c.client.create(kr.DEPLOYMENTS, deployment("web", 5), "default")

            async def ready() -> Any:
                d = await c.client.get(kr.DEPLOYMENTS, "web", "default")
                return (d.get("status") or {}).get("readyReplicas") == 5

            await c.eventually(ready, "5 ready replicas")
            assert len(await c.pods()) == 5
            reasons = [e["reason"] for e in (await c.client.list(kr.EVENTS, "default")).items]
            assert "SuccessfulDelete" not in reasons, "a surplus pod was created and then deleted"

    run(scenario)


def test_a_pod_relabelled_out_of_its_replicaset_is_released_and_replaced() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await c.add_node("node-1")
            rs = workload("ReplicaSet", "web", replicas=2)
            del rs["metadata"]["uid"]
            await c.client.create(kr.REPLICASETS, rs, "default")
            pods = await c.eventually(lambda: _running(c, 2, app="web"), "2 running pods")
            debug = pods[0]["metadata"]["name"]
            await c.client.patch(kr.PODS, debug, {"metadata": {"labels": {"app": "debug"}}}, "default")
            await c.eventually(lambda: _running(c, 2, app="web"), "a replacement for the relabelled pod")

            async def released() -> bool:
                pod = await c.client.get(kr.PODS, debug, "default")
                return not pod["metadata"].get("ownerReferences")

            await c.eventually(released, "the relabelled pod to lose its owner")

    run(scenario)


async def _running(c: Cluster, count: int, **labels: str) -> list[dict[str, Any]] | None:
    pods = [p for p in active(await c.pods(**labels)) if p["status"].get("phase") == "Running"]
    return pods if len(pods) == count else None


def test_a_template_change_rolls_the_deployment_onto_a_new_replicaset() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await c.add_node("node-1")
            await c.client.create(kr.DEPLOYMENTS, deployment("web", 2), "default")

            async def rolled(version: str) -> Any:
                pods = await c.pods()
                d = await c.client.get(kr.DEPLOYMENTS, "web", "default")
                st = d.get("status") or {}
                return (
                    len(pods) == 2
                    and all(p["metadata"]["annotations"] == {"version": version} for p in pods)
                    and all(p["status"].get("phase") == "Running" for p in pods)
                    and st.get("updatedReplicas") == 2
                    and st.get("availableReplicas") == 2
                )

            await c.eventually(lambda: rolled("v1"), "the first rollout")
            patch = {"spec": {"template": {"metadata": {"annotations": {"version": "v2"}}}}}
            await c.client.patch(kr.DEPLOYMENTS, "web", patch, "default")
            await c.eventually(lambda: rolled("v2"), "the rollout of the new template")
            sets = {
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r["spec"]["replicas"]
                for r in (await c.client.list(kr.REPLICASETS, "default")).items
            }
            assert sets == {"1": 0, "2": 2}
            d = await c.client.get(kr.DEPLOYMENTS, "web", "default")
            conditions = {x["type"]: x["reason"] for x in d["status"]["conditions"]}
            assert conditions == {
                "Available": "MinimumReplicasAvailable",
                "Progressing": "NewReplicaSetAvailable",
            }

    run(scenario)


def test_a_daemonset_runs_one_pod_per_matching_node_including_nodes_added_later() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await c.add_node("node-1", role="net")
            await c.add_node("node-2")
            ds = workload("DaemonSet", "agent")
            del ds["metadata"]["uid"]
            ds["spec"]["template"]["spec"]["nodeSelector"] = {"role": "net"}
            await c.client.create(kr.DAEMONSETS, ds, "default")

            async def on_nodes(*nodes: str) -> Any:
                pods = active(await c.pods())
                got = await c.client.get(kr.DAEMONSETS, "agent", "default")
                st = got.get("status") or {}
                return (
                    sorted(p["spec"]["nodeName"] for p in pods) == list(nodes)
                    and st.get("numberReady") == len(nodes)
                    and st.get("desiredNumberScheduled") == len(nodes)
                    and pods
                )

            (first,) = await c.eventually(lambda: on_nodes("node-1"), "a pod on the matching node only")
            assert first["metadata"]["name"].startswith("agent-") and len(first["metadata"]["name"]) == 11
            assert first["metadata"]["labels"]["controller-revision-hash"]
            assert first["metadata"]["labels"]["pod-template-generation"] == "1"
            await c.add_node("node-3", role="net")
            await c.eventually(lambda: on_nodes("node-1", "node-3"), "a pod on the node added later")
            await c.client.delete(kr.PODS, first["metadata"]["name"], "default")
            await c.eventually(
                lambda: _replaced(c, first["metadata"]["name"], 2), "the deleted pod recreated"
            )

    run(scenario)


def test_a_daemonset_pod_on_a_removed_node_is_deleted_and_garbage_collected_without_a_kubelet() -> None:
    async def scenario() -> None:
        async with cluster(kubelet=False) as c:
            await c.add_node("node-1")
            await c.add_node("node-2")
            ds = workload("DaemonSet", "agent")
            del ds["metadata"]["uid"]
            await c.client.create(kr.DAEMONSETS, ds, "default")

            async def on_nodes(*nodes: str) -> Any:
                pods = await c.pods()
                return sorted(p["spec"]["nodeName"] for p in pods) == list(nodes) and pods

            await c.eventually(lambda: on_nodes("node-1", "node-2"), "a pod on each node")
            await c.client.delete(kr.NODES, "node-2")
            await c.eventually(lambda: on_nodes("node-1"), "the pod of the removed node to be gone")

    run(scenario)


def test_a_pod_the_server_refuses_is_reported_on_its_replicaset_as_failed_create() -> None:
    async def scenario() -> None:
        async with cluster(kubelet=False) as c:
            rs = workload("ReplicaSet", "broken", replicas=1)
            del rs["metadata"]["uid"]
            rs["spec"]["template"]["spec"]["containers"][0]["image"] = ""
            await c.client.create(kr.REPLICASETS, rs, "default")

            async def failed() -> Any:
                events = (
                    await c.client.list(kr.EVENTS, "default", field_selector="involvedObject.name=broken")
                ).items
                return [(e["type"], e["reason"]) for e in events]

            assert await c.eventually(failed, "a FailedCreate event") == [("Warning", "FailedCreate")]
            assert await c.pods() == []

    run(scenario)


MANIFESTS = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: mnp-agent, namespace: kube-system, labels: {app: mnp-agent}}
spec:
  selector: {matchLabels: {app: mnp-agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: mnp-agent}}
    spec:
      hostNetwork: true
      serviceAccountName: default
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{operator: Exists, effect: NoSchedule}]
      containers:
      - name: agent
        image: registry.invalid/mnp:dev
        args: [agent, --hostname-override=$(NODE_NAME)]
        env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        securityContext: {privileged: true}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mnp-controller, namespace: kube-system}
spec:
  replicas: 2
  selector: {matchLabels: {app: mnp-controller}}
  template:
    metadata: {labels: {app: mnp-controller}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: mnp-controller}}
      containers:
      - name: controller
        image: registry.invalid/mnp:dev
        args: [controller, --leader-elect]
"""


def test_an_agent_daemonset_and_a_controller_deployment_applied_with_kubectl_run_on_the_nodes(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with cluster() as c:
            for n in ("node-1", "node-2", "node-3"):
                await c.add_node(n)
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(c.kubeconfig)}
            kubectl = Path(sys.executable).parent / "kubectl"
            done = await asyncio.to_thread(
                subprocess.run,
                [str(kubectl), "apply", "-f", "-"],
                input=MANIFESTS,
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr

            async def running() -> Any:
                pods = active(await c.pods("kube-system"))
                ready = [p for p in pods if p["status"].get("phase") == "Running"]
                return len(pods) == 5 and len(ready) == 5 and pods

            pods = await c.eventually(running, "3 agents and 2 controllers running")
            agents = sorted(
                p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"].get("app") == "mnp-agent"
            )
            assert agents == ["node-1", "node-2", "node-3"]
            controllers = {
                p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"].get("app") == "mnp-controller"
            }
            assert len(controllers) == 2, "the least loaded nodes take one controller each"
            rollout = await asyncio.to_thread(
                subprocess.run,
                [
                    str(kubectl),
                    "rollout",
                    "status",
                    "-n",
                    "kube-system",
                    "deployment/mnp-controller",
                    "--timeout=10s",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            assert rollout.returncode == 0 and "successfully rolled out" in rollout.stdout, rollout.stderr

    run(scenario)


def test_the_scheduler_binds_by_node_selector_and_reports_a_pod_no_node_fits() -> None:
    async def scenario() -> None:
        async with cluster(kubelet=False) as c:
            await c.add_node("node-1")
            await c.add_node("node-2", disk="ssd")
            for name, selector in (("fast", {"disk": "ssd"}), ("gpu", {"gpu": "yes"})):
                body = unscheduled(name, nodeSelector=selector)
                del body["metadata"]["uid"], body["metadata"]["creationTimestamp"], body["status"]
                body["spec"]["containers"][0]["image"] = "registry.invalid/x:1"
                await c.client.create(kr.PODS, body, "default")

            async def node_of(name: str) -> Any:
                return (await c.client.get(kr.PODS, name, "default"))["spec"].get("nodeName")

            assert await c.eventually(lambda: node_of("fast"), "the ssd pod to be bound") == "node-2"
            fast = await c.client.get(kr.PODS, "fast", "default")
            assert [(x["type"], x["status"]) for x in fast["status"]["conditions"]] == [
                ("PodScheduled", "True")
            ]

            async def unschedulable() -> Any:
                pod = await c.client.get(kr.PODS, "gpu", "default")
                conds = [
                    x
                    for x in (pod.get("status") or {}).get("conditions") or []
                    if x["type"] == "PodScheduled"
                ]
                return conds and conds[0]["status"] == "False" and conds[0]

            cond = await c.eventually(unschedulable, "PodScheduled=False on the gpu pod")
            assert cond["reason"] == "Unschedulable"
            assert cond["message"].startswith("0/2 nodes are available: 2 node(s) didn't match")

            async def gpu_events() -> list[tuple[str, str]]:
                events = await c.client.list(kr.EVENTS, "default", field_selector="involvedObject.name=gpu")
                return [(e["reason"], e["type"]) for e in events.items]

            assert await c.eventually(gpu_events, "the FailedScheduling event") == [
                ("FailedScheduling", "Warning")
            ]
            await c.add_node("node-3", gpu="yes")
            assert (
                await c.eventually(lambda: node_of("gpu"), "the gpu pod bound once a node fits") == "node-3"
            )
            assert await gpu_events() == [("FailedScheduling", "Warning")]

    run(scenario)


def test_the_controllers_process_runs_against_a_kubeconfig_and_exits_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    running = apiserver.start(tmp_path, "127.0.0.1:0")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnp.local.workloads", "--kubeconfig", str(tmp_path / "kubeconfig")],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "workload controllers started" in line:
                break
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        running.stop()
