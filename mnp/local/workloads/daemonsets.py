"""The DaemonSet controller: one pod per Ready node that matches the template's node selector.

Pods are created with spec.nodeName already set (the controller places them itself, as DaemonSets did
before they went through the scheduler), so they need no scheduler. A pod on a node that is gone or no
longer matches is deleted, as is a failed one; its replacement waits until the old pod is gone (a
hostNetwork agent would otherwise find its ports taken). A template change (RollingUpdate) replaces outdated
pods that are not Ready at once and Ready ones within maxUnavailable (default 1); OnDelete waits for users.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mnp.kube import resources as kr
from mnp.local.workloads import objects as ob
from mnp.local.workloads.objects import Action, Create, Delete, Raw
from mnp.local.workloads.scheduler import node_matches

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"


def _delete(ds: Raw, pod: Raw) -> Delete:
    return Delete(kr.PODS, ob.namespace(pod), ob.name(pod), ob.uid(pod), owner=ob.uid(ds))


def reconcile_daemonset(ds: Raw, nodes: Iterable[Raw], pods: Iterable[Raw]) -> list[Action]:
    """Pods to create or delete for one DaemonSet, and its status."""
    template = ob.spec(ds).get("template") or {}
    pod_spec = template.get("spec") or {}
    revision = ob.template_hash(template)
    owned = ob.owned_by(pods, ds)
    on_node: dict[str, list[Raw]] = {}
    for pod in owned:
        on_node.setdefault(str(ob.spec(pod).get("nodeName") or ""), []).append(pod)
    node_list = sorted(nodes, key=ob.name)
    matching = {ob.name(n) for n in node_list if node_matches(pod_spec, n) and not ob.terminating(n)}
    ready_nodes = {ob.name(n) for n in node_list if ob.node_ready(n)}
    actions: list[Action] = []
    misscheduled = 0
    for node_name, node_pods in sorted(on_node.items()):
        if node_name not in matching:
            misscheduled += sum(1 for p in node_pods if ob.pod_active(p))
            actions += [_delete(ds, p) for p in node_pods if not ob.terminating(p)]
    # Nodes that should run the pod: matching and Ready, or matching and already running it.
    desired = sorted(
        n for n in matching if n in ready_nodes or any(ob.pod_active(p) for p in on_node.get(n, []))
    )
    scheduled = ready = updated = 0
    outdated: list[Raw] = []
    for node_name in desired:
        node_pods = on_node.get(node_name, [])
        actions += [
            _delete(ds, p)
            for p in node_pods
            if ob.status(p).get("phase") == "Failed" and not ob.terminating(p)
        ]
        active = sorted(
            (p for p in node_pods if ob.pod_active(p)),
            key=lambda p: (str(ob.meta(p).get("creationTimestamp")), ob.name(p)),
        )
        if not active:
            if not ob.terminating(ds) and not any(ob.terminating(p) for p in node_pods):
                actions.append(_create(ds, template, revision, node_name))
            continue
        scheduled += 1
        actions += [_delete(ds, p) for p in active[1:]]  # the oldest stays
        keep = active[0]
        ready += 1 if ob.pod_ready(keep) else 0
        if (ob.meta(keep).get("labels") or {}).get(REVISION_LABEL) == revision:
            updated += 1
        else:
            outdated.append(keep)
    strategy = ob.spec(ds).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "OnDelete" and not ob.terminating(ds):
        # Outdated pods that are not ready go at once; ready ones only within the unavailability budget.
        budget = max_unavailable(strategy, len(desired)) - (len(desired) - ready)
        for pod in sorted(outdated, key=lambda p: (ob.pod_ready(p), ob.name(p))):
            if ob.pod_ready(pod):
                if budget <= 0:
                    break
                budget -= 1
            actions.append(_delete(ds, pod))
    actions += ob.status_patch(
        kr.DAEMONSETS,
        ds,
        {
            "desiredNumberScheduled": len(desired),
            "currentNumberScheduled": scheduled,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": len(desired) - ready,
            "updatedNumberScheduled": updated,
            "observedGeneration": ob.generation(ds),
        },
    )
    return actions


def max_unavailable(strategy: Mapping[str, Any], desired: int) -> int:
    """rollingUpdate.maxUnavailable as a count: an integer, or a percentage of desired rounded up; ≥ 1."""
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        try:
            return max(1, math.ceil(desired * int(value[:-1]) / 100))
        except ValueError:
            return 1
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def _create(ds: Raw, template: Raw, revision: str, node: str) -> Create:
    labels = {REVISION_LABEL: revision, GENERATION_LABEL: str(ob.generation(ds))}
    body = ob.pod_from_template(
        template, ob.controller_ref(ds, "DaemonSet"), ob.namespace(ds), ob.name(ds), labels
    )
    body["spec"]["nodeName"] = node
    return Create(kr.PODS, ob.namespace(ds), body, owner=ob.uid(ds))
