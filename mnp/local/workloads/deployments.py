"""The Deployment controller: one ReplicaSet per pod template, named <deployment>-<pod-template-hash>.

Rolling is deliberately simple: the new ReplicaSet is scaled to spec.replicas at once and the old ones
to 0 once all of the new one's pods are Ready (a surge of up to 100%, never less available than before).
With strategy Recreate the old ReplicaSets are scaled to 0 first and the new one only once their pods
are gone. Scaled-down ReplicaSets beyond revisionHistoryLimit are deleted. Status has the fields that
`kubectl rollout status` and `kubectl get` read.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from mnp.kube import resources as kr
from mnp.local.workloads import objects as ob
from mnp.local.workloads.objects import Action, Create, Delete, Patch, Raw, Record
from mnp.local.workloads.replicasets import desired_replicas

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
CONTROLLER = "deployment-controller"
DEFAULT_HISTORY = 10


def _revision(rs: Raw) -> int:
    try:
        return int((ob.meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def new_replicaset(deploy: Raw, pod_hash: str, replicas: int, revision: int) -> Raw:
    """The ReplicaSet for the deployment's current template."""
    template = copy.deepcopy(ob.spec(deploy).get("template") or {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash}
    selector = copy.deepcopy(ob.spec(deploy).get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{ob.name(deploy)}-{pod_hash}",
            "namespace": ob.namespace(deploy),
            "labels": dict(tmeta["labels"]),
            "annotations": {REVISION: str(revision)},
            "ownerReferences": [ob.controller_ref(deploy, "Deployment")],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }


def _scale(deploy: Raw, rs: Raw, replicas: int) -> list[Action]:
    current = desired_replicas(rs)
    if current == replicas:
        return []
    return [
        Patch(
            kr.REPLICASETS,
            ob.namespace(rs),
            ob.name(rs),
            {"spec": {"replicas": replicas}},
            ob.resource_version(rs),
        ),
        _scaled(deploy, ob.name(rs), current, replicas),
    ]


def _scaled(deploy: Raw, rs_name: str, before: int, after: int) -> Record:
    way = "up" if after > before else "down"
    message = f"Scaled {way} replica set {rs_name} from {before} to {after}"
    return Record(CONTROLLER, deploy, "Normal", "ScalingReplicaSet", message)


def _prune_history(deploy: Raw, old: list[Raw], by_rs: dict[str, list[Raw]]) -> list[Action]:
    """Deletes of the oldest scaled-down ReplicaSets beyond spec.revisionHistoryLimit (default 10)."""
    limit = ob.spec(deploy).get("revisionHistoryLimit")
    limit = DEFAULT_HISTORY if limit is None else max(int(limit), 0)
    idle = [
        rs
        for rs in old
        if desired_replicas(rs) == 0 and not ob.status(rs).get("replicas") and not by_rs[ob.uid(rs)]
    ]
    idle.sort(key=lambda rs: (_revision(rs), ob.name(rs)))
    surplus = idle[: max(len(idle) - limit, 0)]
    return [Delete(kr.REPLICASETS, ob.namespace(rs), ob.name(rs), ob.uid(rs)) for rs in surplus]


def reconcile_deployment(
    deploy: Raw, replicasets: Iterable[Raw], pods: Iterable[Raw], now: str
) -> list[Action]:
    """ReplicaSets to create or scale for one Deployment, and its status."""
    if ob.terminating(deploy):
        return []
    owned = ob.owned_by(replicasets, deploy)
    pod_hash = ob.template_hash(ob.spec(deploy).get("template") or {})
    new_rs = next((rs for rs in owned if (ob.meta(rs).get("labels") or {}).get(HASH_LABEL) == pod_hash), None)
    old = [rs for rs in owned if rs is not new_rs]
    by_rs: dict[str, list[Raw]] = {ob.uid(rs): [] for rs in owned}
    for pod in pods:
        if ob.pod_active(pod) and ob.controller_uid(pod) in by_rs:
            by_rs[ob.controller_uid(pod)].append(pod)
    want = desired_replicas(deploy)
    recreate = (ob.spec(deploy).get("strategy") or {}).get("type") == "Recreate"
    old_pods = sum(len(by_rs[ob.uid(rs)]) for rs in old)
    actions: list[Action] = []
    if not ob.spec(deploy).get("paused"):
        new_ready = 0
        if new_rs is None:
            replicas = 0 if recreate and old_pods else want
            revision = max((_revision(rs) for rs in owned), default=0) + 1
            body = new_replicaset(deploy, pod_hash, replicas, revision)
            actions.append(Create(kr.REPLICASETS, ob.namespace(deploy), body))
            if replicas:
                actions.append(_scaled(deploy, ob.name(body), 0, replicas))
        else:
            new_ready = sum(1 for p in by_rs[ob.uid(new_rs)] if ob.pod_ready(p))
            actions += _scale(deploy, new_rs, 0 if recreate and old_pods else want)
        if recreate or (new_rs is not None and new_ready >= want):
            for rs in old:
                actions += _scale(deploy, rs, 0)
        actions += _prune_history(deploy, old, by_rs)
    new_pods = by_rs[ob.uid(new_rs)] if new_rs is not None else []
    all_pods = [p for group in by_rs.values() for p in group]
    ready = sum(1 for p in all_pods if ob.pod_ready(p))
    updated = len(new_pods)
    available = ready
    conditions = ob.status(deploy).get("conditions") or []
    if available >= want:
        conditions = ob.with_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    else:
        conditions = ob.with_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    rs_name = f"{ob.name(deploy)}-{pod_hash}"
    if updated == want and not old_pods and sum(1 for p in new_pods if ob.pod_ready(p)) >= want:
        progress = ("NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
    else:
        progress = ("ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
    conditions = ob.with_condition(conditions, "Progressing", "True", *progress, now)
    actions += ob.status_patch(
        kr.DEPLOYMENTS,
        deploy,
        {
            "observedGeneration": ob.generation(deploy),
            "replicas": len(all_pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(want - available, 0),
            "conditions": conditions,
        },
    )
    return actions
