"""When is the local cluster converged? A pure decision over the listed objects, for `mnp local wait`.

Converged means: every pod Running with all its containers started and every requested secondary
network in its network-status; every MultiNetworkPolicy observed at its generation; every
PodNetworkRuleset observed at its generation with Applied=True. A pod held back by something only the
user can fix (a missing NetworkAttachmentDefinition, a bad annotation) is reported but does not block,
and so is a pod that has failed for good; a pod that has Succeeded is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mnp.api.multus import NETWORK_STATUS, NETWORKS, interface_names, parse_network_status, parse_networks

# Condition or container waiting reasons that no amount of waiting fixes.
USER_MUST_FIX = frozenset(
    {
        "NetworkAttachmentDefinitionMissing",
        "InvalidNetworksAnnotation",
        "CreateContainerConfigError",
        "Unschedulable",
    }
)


@dataclass(frozen=True, slots=True, order=True)
class Unconverged:
    """One object that is not where it should be, and why, e.g. `pod default/web: phase Pending`."""

    kind: str  # pod, multinetworkpolicy, podnetworkruleset
    ref: str  # namespace/name
    why: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}: {self.why}"


@dataclass(frozen=True, slots=True)
class Convergence:
    waiting: tuple[Unconverged, ...]  # what still blocks, sorted
    user_must_fix: tuple[Unconverged, ...]  # named, never waited for, sorted

    @property
    def converged(self) -> bool:
        return not self.waiting


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _ref(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _user_fix_reason(pod: Mapping[str, Any]) -> str | None:
    status = _status(pod)
    for c in status.get("conditions") or []:
        if c.get("status") != "True" and c.get("reason") in USER_MUST_FIX:
            return f"{c['reason']}: {c.get('message') or c.get('type')}"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in USER_MUST_FIX:
            return f"container {cs.get('name')}: {waiting['reason']}: {waiting.get('message') or ''}".rstrip(
                ": "
            )
    return None


def _missing_networks(pod: Mapping[str, Any]) -> str | None:
    meta = _meta(pod)
    annotations = meta.get("annotations") or {}
    requested_text = annotations.get(NETWORKS)
    if not requested_text:
        return None
    ns = str(meta.get("namespace") or "")
    try:
        requested = parse_networks(str(requested_text), ns)
    except ValueError:
        return None  # the kubelet reports it (InvalidNetworksAnnotation); nothing to wait for here
    status_text = annotations.get(NETWORK_STATUS)
    if not status_text:
        return "networks not attached yet (no network-status)"
    try:
        attached = {(a.network, a.interface) for a in parse_network_status(str(status_text), ns)}
    except ValueError as e:
        return f"network-status unreadable: {e}"
    missing = [
        f"{s.network}@{iface}"
        for s, iface in zip(requested, interface_names(requested), strict=True)
        if (s.network, iface) not in attached
    ]
    return f"networks not attached yet: {', '.join(missing)}" if missing else None


def pod_state(pod: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(why the pod is not converged or None, whether it is the user's to fix)."""
    if _meta(pod).get("deletionTimestamp"):
        return "terminating", False
    status = _status(pod)
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        return None, False
    if phase == "Failed":
        return f"Failed: {status.get('reason') or status.get('message') or 'see its events'}", True
    reason = _user_fix_reason(pod)
    if reason is not None:
        return reason, True
    if phase != "Running":
        return f"phase {phase}", False
    spec = pod.get("spec") or {}
    statuses = {cs.get("name"): cs for cs in status.get("containerStatuses") or []}
    for c in spec.get("containers") or []:
        cs = statuses.get(c.get("name"))
        if cs is None or not (cs.get("started") or "running" in (cs.get("state") or {})):
            return f"container {c.get('name')} not started", False
    if not spec.get("hostNetwork"):
        missing = _missing_networks(pod)
        if missing is not None:
            return missing, False
    return None, False


def _observed(obj: Mapping[str, Any]) -> str | None:
    generation = _meta(obj).get("generation")
    observed = _status(obj).get("observedGeneration")
    if observed is None:
        return "not observed yet"
    if generation is not None and observed != generation:
        return f"observed generation {observed}, current {generation}"
    return None


def _applied(ruleset: Mapping[str, Any]) -> str | None:
    observed = _observed(ruleset)
    if observed is not None:
        return observed
    for c in _status(ruleset).get("conditions") or []:
        if c.get("type") == "Applied":
            if c.get("status") == "True":
                return None
            return f"Applied={c.get('status')} {c.get('reason') or ''}: {c.get('message') or ''}".rstrip(": ")
    return "no Applied condition"


def decide(
    pods: Iterable[Mapping[str, Any]],
    policies: Sequence[Mapping[str, Any]] | None = None,
    rulesets: Sequence[Mapping[str, Any]] | None = None,
) -> Convergence:
    """Whether these objects are converged; `None` lists mean that kind is not served (no CRD yet)."""
    waiting: list[Unconverged] = []
    fix: list[Unconverged] = []
    for pod in pods:
        why, users = pod_state(pod)
        if why is not None:
            (fix if users else waiting).append(Unconverged("pod", _ref(pod), why))
    for policy in policies or ():
        why = _observed(policy)
        if why is not None:
            waiting.append(Unconverged("multinetworkpolicy", _ref(policy), why))
    for ruleset in rulesets or ():
        why = _applied(ruleset)
        if why is not None:
            waiting.append(Unconverged("podnetworkruleset", _ref(ruleset), why))
    return Convergence(tuple(sorted(waiting)), tuple(sorted(fix)))


__all__ = ["USER_MUST_FIX", "Convergence", "Unconverged", "decide", "pod_state"]
