"""The ReplicaSet controller: keeps spec.replicas active pods from the template, and the RS status.

Pods being deleted or finished do not count, so a pod a user deletes is replaced at once (as on a real
cluster, while the old one is still Terminating). Surplus pods go least useful first: unscheduled,
then pending, then not ready, then newest. Like the real controller it adopts orphan pods its selector
matches and releases pods relabelled out of it (which are then replaced).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mnp.kube import resources as kr
from mnp.local.workloads import objects as ob
from mnp.local.workloads.objects import Action, Create, Delete, Patch, Raw

BURST = 100  # pods created per reconcile at most, like the real controller's slow start ceiling


def desired_replicas(obj: Mapping[str, Any]) -> int:
    replicas = ob.spec(obj).get("replicas")
    return 1 if replicas is None else max(int(replicas), 0)


def surplus_order(pods: Iterable[Raw]) -> list[Raw]:
    """Pods in the order a scale-down removes them (controller.ActivePods' order, simplified)."""
    newest_first = sorted(
        pods, key=lambda p: (str(ob.meta(p).get("creationTimestamp") or ""), ob.name(p)), reverse=True
    )
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
    return sorted(  # stable: among equals, the newest stays first
        newest_first,
        key=lambda p: (
            1 if ob.spec(p).get("nodeName") else 0,
            phase_rank.get(str(ob.status(p).get("phase") or "Pending"), 0),
            1 if ob.pod_ready(p) else 0,
        ),
    )


def _owner_patch(pod: Raw, refs: list[Any]) -> Patch:
    return Patch(
        kr.PODS,
        ob.namespace(pod),
        ob.name(pod),
        {"metadata": {"ownerReferences": refs or None}},
        ob.resource_version(pod),
    )


def claim_pods(rs: Raw, pods: Iterable[Raw]) -> tuple[list[Raw], list[Action]]:
    """The pods the ReplicaSet controls, and the patches of ClaimPods: an orphan its selector matches is
    adopted (and counts at once); an owned pod whose labels no longer match is released."""
    selector = ob.spec(rs).get("selector")
    claimed: list[Raw] = []
    actions: list[Action] = []
    for pod in sorted(pods, key=ob.name):
        labels = ob.meta(pod).get("labels") or {}
        refs = list(ob.meta(pod).get("ownerReferences") or [])
        owner = ob.controller_uid(pod)
        if owner == ob.uid(rs):
            if ob.selector_matches(selector, labels) or ob.terminating(pod):
                claimed.append(pod)
            else:
                actions.append(_owner_patch(pod, [r for r in refs if r.get("uid") != ob.uid(rs)]))
        elif (
            not owner
            and ob.pod_active(pod)
            and not ob.terminating(rs)
            and ob.selector_matches(selector, labels)
        ):
            actions.append(_owner_patch(pod, [*refs, ob.controller_ref(rs, "ReplicaSet")]))
            claimed.append(pod)
    return claimed, actions


def reconcile_replicaset(rs: Raw, pods: Iterable[Raw]) -> list[Action]:
    """Pods to adopt, release, create or delete for one ReplicaSet, and its status, from the pods in
    its namespace."""
    owned, actions = claim_pods(rs, pods)
    active = [p for p in owned if ob.pod_active(p)]
    if not ob.terminating(rs):
        want = desired_replicas(rs)
        if len(active) < want:
            template = ob.spec(rs).get("template") or {}
            owner = ob.controller_ref(rs, "ReplicaSet")
            for _ in range(min(want - len(active), BURST)):
                body = ob.pod_from_template(template, owner, ob.namespace(rs), ob.name(rs), {})
                actions.append(Create(kr.PODS, ob.namespace(rs), body, owner=ob.uid(rs)))
        elif len(active) > want:
            for pod in surplus_order(active)[: len(active) - want]:
                actions.append(
                    Delete(kr.PODS, ob.namespace(pod), ob.name(pod), ob.uid(pod), owner=ob.uid(rs))
                )
    ready = sum(1 for p in active if ob.pod_ready(p))
    labels = (ob.spec(rs).get("template") or {}).get("metadata", {}).get("labels") or {}
    labelled = sum(
        1 for p in active if all((ob.meta(p).get("labels") or {}).get(k) == v for k, v in labels.items())
    )
    actions += ob.status_patch(
        kr.REPLICASETS,
        rs,
        {
            "replicas": len(active),
            "fullyLabeledReplicas": labelled,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": ob.generation(rs),
        },
    )
    return actions
