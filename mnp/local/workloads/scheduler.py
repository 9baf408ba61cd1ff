"""The scheduler: binds pods without a node to the least loaded Ready node that fits them.

Fit is what a local cluster needs: a Ready, schedulable node whose labels match spec.nodeSelector and
the required node affinity (matchExpressions on labels, matchFields on metadata.name). Among fitting
nodes the one with the fewest non-terminal pods wins, ties broken by name. A pod that fits nowhere gets
PodScheduled=False/Unschedulable (its message kept current) and one FailedScheduling Event; the runner
retries it when nodes change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from mnp.kube import resources as kr
from mnp.local.workloads import objects as ob
from mnp.local.workloads.objects import Action, Bind, Patch, Raw, Record

SCHEDULER_NAME = "default-scheduler"


def needs_scheduling(pod: Mapping[str, Any]) -> bool:
    """Unbound, not being deleted, not finished, and meant for this scheduler."""
    s = ob.spec(pod)
    return (
        not s.get("nodeName")
        and not ob.terminating(pod)
        and ob.status(pod).get("phase") not in ("Succeeded", "Failed")
        and s.get("schedulerName", SCHEDULER_NAME) == SCHEDULER_NAME
    )


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    labels = ob.meta(node).get("labels") or {}
    fields = {"metadata.name": ob.name(node)}
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False  # "A null or empty node selector term matches no objects."
    return all(ob.requirement_matches(r, labels) for r in exprs) and all(
        ob.requirement_matches(r, fields) for r in field_exprs
    )


def node_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """spec.nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity."""
    labels = ob.meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(_term_matches(t, node) for t in terms)  # terms are ORed


def _why_not(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    if not ob.node_ready(node):
        return "node(s) were not ready"
    if ob.spec(node).get("unschedulable"):
        return "node(s) were unschedulable"
    if not node_matches(pod_spec, node):
        return "node(s) didn't match Pod's node affinity/selector"
    return ""


def unschedulable_message(pod: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> str:
    """The real scheduler's summary: `0/3 nodes are available: 3 node(s) were not ready.`"""
    reasons = Counter(_why_not(ob.spec(pod), n) for n in nodes)
    total = sum(reasons.values())
    parts = [f"{count} {reason}" for reason, count in sorted(reasons.items()) if reason]
    return f"0/{total} nodes are available: " + (", ".join(parts) if parts else "no nodes registered") + "."


def schedule(pods: Iterable[Raw], nodes: Iterable[Raw], now: str) -> list[Action]:
    """Bindings for every pod that needs a node, plus Unschedulable reports for those that fit none.

    Pods are taken oldest first (then by namespace/name), and each binding counts toward the load of
    its node for the pods after it, so one pass spreads a burst evenly.
    """
    node_list = sorted(nodes, key=ob.name)
    pod_list = list(pods)
    load: Counter[str] = Counter(
        ob.spec(p).get("nodeName", "")
        for p in pod_list
        if ob.spec(p).get("nodeName") and ob.status(p).get("phase") not in ("Succeeded", "Failed")
    )
    pending = sorted(
        (p for p in pod_list if needs_scheduling(p)),
        key=lambda p: (ob.meta(p).get("creationTimestamp") or "", ob.namespace(p), ob.name(p)),
    )
    actions: list[Action] = []
    for pod in pending:
        fits = [n for n in node_list if not _why_not(ob.spec(pod), n)]
        if fits:
            best = min(fits, key=lambda n: (load[ob.name(n)], ob.name(n)))
            load[ob.name(best)] += 1
            actions.append(Bind(ob.namespace(pod), ob.name(pod), ob.name(best)))
            continue
        actions.extend(_unschedulable(pod, unschedulable_message(pod, node_list), now))
    return actions


def _unschedulable(pod: Raw, message: str, now: str) -> list[Action]:
    current = ob.condition(pod, "PodScheduled")
    if current.get("status") == "False" and current.get("message") == message:
        return []
    conditions = ob.with_condition(
        ob.status(pod).get("conditions") or [], "PodScheduled", "False", "Unschedulable", message, now
    )
    actions: list[Action] = [
        Patch(
            kr.PODS,
            ob.namespace(pod),
            ob.name(pod),
            {"status": {"conditions": conditions}},
            ob.resource_version(pod),
            sub="status",
        )
    ]
    if current.get("status") != "False":  # one Event per time the pod becomes unschedulable
        actions.append(Record(SCHEDULER_NAME, pod, "Warning", "FailedScheduling", message))
    return actions
