"""A pod's status as the kubelet reports it (pure: what the node knows in, status JSON out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONDITION_TYPES = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What the node knows about one pod at one moment."""

    host_ips: tuple[str, ...]
    pod_ips: tuple[str, ...] = ()
    sandbox_ready: bool = False
    start_time: str | None = None
    containers: tuple[Mapping[str, Any], ...] = ()  # containerStatuses, Kubernetes JSON
    problem: tuple[str, str] | None = None  # (reason, message) the user must act on


def pod_phase(restart_policy: str, facts: PodFacts, expected: int) -> str:
    """Pending until every container has started once; Succeeded/Failed when all ended for good."""
    never_started = [c for c in facts.containers if "waiting" in (c.get("state") or {}) and not _ran(c)]
    if not facts.sandbox_ready or len(facts.containers) < expected or never_started:
        return "Pending"
    states = [c.get("state") or {} for c in facts.containers]
    if all("terminated" in s for s in states) and restart_policy != "Always":
        codes = [int(s["terminated"].get("exitCode", 1)) for s in states]
        if all(code == 0 for code in codes):
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
    return "Running"


def _ran(container: Mapping[str, Any]) -> bool:
    return bool(container.get("restartCount")) or bool(container.get("lastState"))


def pod_status(
    pod: Mapping[str, Any], facts: PodFacts, now: str, old: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The whole `status` of `pod`; conditions keep their lastTransitionTime while unchanged."""
    spec = pod.get("spec") or {}
    expected = len(spec.get("containers") or [])
    phase = pod_phase(str(spec.get("restartPolicy") or "Always"), facts, expected)
    ready = (
        phase == "Running"
        and len(facts.containers) == expected
        and all(c.get("ready") for c in facts.containers)
    )
    problem = facts.problem
    not_ready = problem or ("ContainersNotReady", "containers are not ready yet")
    wanted: dict[str, tuple[bool, str, str]] = {
        "PodReadyToStartContainers": (facts.sandbox_ready, "", ""),
        "Initialized": (True, "", ""),
        "Ready": (ready, *(("", "") if ready else not_ready)),
        "ContainersReady": (ready, *(("", "") if ready else not_ready)),
        "PodScheduled": (True, "", ""),
    }
    before = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    conditions = []
    for kind in CONDITION_TYPES:
        ok, reason, message = wanted[kind]
        status = "True" if ok else "False"
        prev = before.get(kind) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        cond: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since or now,
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        conditions.append(cond)
    status_out: dict[str, Any] = {"phase": phase, "conditions": conditions, "qosClass": "BestEffort"}
    if facts.host_ips:
        status_out["hostIP"] = facts.host_ips[0]
        status_out["hostIPs"] = [{"ip": ip} for ip in facts.host_ips]
    if facts.pod_ips:
        status_out["podIP"] = facts.pod_ips[0]
        status_out["podIPs"] = [{"ip": ip} for ip in facts.pod_ips]
    if facts.start_time:
        status_out["startTime"] = facts.start_time
    if facts.containers:
        status_out["containerStatuses"] = [dict(c) for c in facts.containers]
    return status_out


def waiting_statuses(pod: Mapping[str, Any], reason: str, message: str) -> tuple[dict[str, Any], ...]:
    """containerStatuses for containers that cannot be created yet, all waiting for `reason`."""
    return tuple(
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": {},
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    )


def sorted_ips(ips: Sequence[str]) -> tuple[str, ...]:
    """IPv4 first, as the kubelet orders podIPs for a dual-stack pod with an IPv4 primary family."""
    return tuple(sorted(ips, key=lambda ip: ":" in ip))


__all__ = ["PodFacts", "pod_phase", "pod_status", "sorted_ips", "waiting_statuses"]
