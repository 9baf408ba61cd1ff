"""What the controller must write (pure): rulesets to create, update or delete, and policy status.

Given the compiler's result and the rulesets that exist, `plan_writes` returns only real changes, so a
resync with nothing new makes zero API writes. `policy_status` aggregates the agents' Applied
conditions of the rulesets a policy selects into counts and the Accepted/Enforced conditions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mnp.api.cluster import Pod
from mnp.api.refs import Diagnostic, ObjRef
from mnp.api.ruleset import NODE_LABEL, PeersMemo, PodRef, RulesetSpec, ruleset_object
from mnp.api.status import same_status

Key = tuple[str, str]  # (namespace, name) of a pod and of its ruleset


class Action(StrEnum):
    CREATE = "created"
    UPDATE = "updated"
    DELETE = "deleted"


@dataclass(frozen=True, slots=True)
class Write:
    action: Action
    key: Key
    body: dict[str, Any] | None  # the whole desired object (create/update)
    resource_version: str = ""  # of the existing object (update/delete: optimistic concurrency)
    uid: str = ""  # of the existing object (delete precondition)


def desired_rulesets(
    rulesets: Mapping[ObjRef, RulesetSpec],
    pods: Iterable[Pod],
    cache: dict[ObjRef, tuple[RulesetSpec, str, dict[str, Any]]] | None = None,
) -> dict[Key, dict[str, Any]]:
    """The PodNetworkRuleset objects the cluster should hold, by pod.

    With `cache`, an object is rebuilt only when its spec (by identity: an incremental compile keeps
    the spec objects of untouched pods) or its pod's uid changed.
    """
    uids = {(p.ref.namespace, p.ref.name): p.uid for p in pods}
    out: dict[Key, dict[str, Any]] = {}
    memo: PeersMemo = {}  # objects share the peer lists their specs share (read-only from here on)
    for ref, spec in rulesets.items():
        key = (ref.namespace, ref.name)
        uid = uids.get(key, spec.pod_uid)
        hit = cache.get(ref) if cache is not None else None
        if hit is not None and hit[0] is spec and hit[1] == uid:
            out[key] = hit[2]
            continue
        out[key] = ruleset_object(PodRef(ref.namespace, ref.name, uid), spec, memo=memo)
        if cache is not None:
            cache[ref] = (spec, uid, out[key])
    if cache is not None:
        for ref in [r for r in cache if r not in rulesets]:
            del cache[ref]
    return out


def _differs(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    meta_w, meta_h = want.get("metadata") or {}, have.get("metadata") or {}
    if want.get("spec") != have.get("spec"):
        return True
    labels = meta_h.get("labels") or {}
    if any(labels.get(k) != v for k, v in (meta_w.get("labels") or {}).items()):
        return True
    owners_w = [(o.get("uid"), o.get("controller")) for o in meta_w.get("ownerReferences") or []]
    owners_h = [(o.get("uid"), o.get("controller")) for o in meta_h.get("ownerReferences") or []]
    return owners_w != owners_h


def plan_writes(
    desired: Mapping[Key, dict[str, Any]], existing: Mapping[Key, Mapping[str, Any]]
) -> list[Write]:
    """Creates, updates (spec, node label or owner differ) and deletes, sorted by key."""
    writes: list[Write] = []
    for key in sorted(set(desired) | set(existing)):
        want, have = desired.get(key), existing.get(key)
        if have is None and want is not None:
            writes.append(Write(Action.CREATE, key, want))
        elif want is None and have is not None:
            meta = have.get("metadata") or {}
            if not meta.get("deletionTimestamp"):
                writes.append(
                    Write(
                        Action.DELETE,
                        key,
                        None,
                        str(meta.get("resourceVersion") or ""),
                        str(meta.get("uid") or ""),
                    )
                )
        elif want is not None and have is not None and _differs(want, have):
            meta = have.get("metadata") or {}
            body = {**want, "metadata": {**want["metadata"], "resourceVersion": meta.get("resourceVersion")}}
            # Keep labels others added (only ours are managed), as an apply with a field manager would.
            body["metadata"]["labels"] = {**(meta.get("labels") or {}), **want["metadata"]["labels"]}
            writes.append(Write(Action.UPDATE, key, body, str(meta.get("resourceVersion") or "")))
    return writes


# ---- policy status ---------------------------------------------------------------------------------


def _applied(ruleset: Mapping[str, Any]) -> bool | None:
    """True/False for a ruleset the agent has acted on at its current generation; None if not yet."""
    status = ruleset.get("status") or {}
    generation = (ruleset.get("metadata") or {}).get("generation")
    for c in status.get("conditions") or []:
        if c.get("type") == "Applied":
            if status.get("observedGeneration") != generation:
                return None
            return bool(c.get("status") == "True")
    return None


# A condition message may not pass 32768 bytes (metav1.Condition, crds/): a policy with thousands of
# bad entries or a 100,000-character value would otherwise never get its status written.
MAX_PROBLEMS_SHOWN = 20
MAX_PROBLEM_CHARS = 500


def problem_messages(problems: Iterable[Diagnostic]) -> list[str]:
    """`field: message` of each distinct problem, sorted: the Accepted condition and the Event say it.

    The first MAX_PROBLEMS_SHOWN, each cut to MAX_PROBLEM_CHARS, then how many more there are.
    """
    messages = sorted({f"{d.field}: {d.message}" if d.field else d.message for d in problems})
    shown = [m if len(m) <= MAX_PROBLEM_CHARS else m[: MAX_PROBLEM_CHARS - 3] + "..." for m in messages]
    if len(shown) > MAX_PROBLEMS_SHOWN:
        return shown[:MAX_PROBLEMS_SHOWN] + [f"and {len(shown) - MAX_PROBLEMS_SHOWN} more problems"]
    return shown


def policy_status(
    policy: Mapping[str, Any],
    selected: Iterable[ObjRef],
    problems: Iterable[Diagnostic],
    rulesets: Mapping[Key, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    """The policy's whole status; conditions keep lastTransitionTime while unchanged."""
    meta = policy.get("metadata") or {}
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    generation = int(meta.get("generation") or 0)
    pods = sorted({(r.namespace, r.name) for r in selected})
    enforced = failed = 0
    for pod in pods:
        ruleset = rulesets.get(pod)
        if ruleset is None or key not in ((ruleset.get("spec") or {}).get("policies") or []):
            continue
        state = _applied(ruleset)
        if state is True:
            enforced += 1
        elif state is False:
            failed += 1
    messages = problem_messages(problems)
    accepted = (
        (True, "Accepted", "the policy is valid") if not messages else (False, "Invalid", "; ".join(messages))
    )
    if not pods:
        enforcing = (True, "NoPodsSelected", "the policy selects no pod on its networks")
    elif enforced == len(pods):
        enforcing = (True, "Enforced", f"enforced on all {len(pods)} selected pods")
    elif failed:
        enforcing = (
            False,
            "Failed",
            f"{failed} of {len(pods)} selected pods failed to apply it; see their rulesets",
        )
    else:
        enforcing = (False, "Pending", f"enforced on {enforced} of {len(pods)} selected pods so far")
    old = {c.get("type"): c for c in (policy.get("status") or {}).get("conditions") or []}
    conditions = []
    for kind, (ok, reason, message) in (("Accepted", accepted), ("Enforced", enforcing)):
        status = "True" if ok else "False"
        prev = old.get(kind) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": since or now,
            }
        )
    return {
        "observedGeneration": generation,
        "selectedPods": len(pods),
        "enforcedPods": enforced,
        "failedPods": failed,
        "conditions": conditions,
    }


__all__ = [
    "NODE_LABEL",
    "Action",
    "Key",
    "Write",
    "desired_rulesets",
    "plan_writes",
    "policy_status",
    "problem_messages",
    "same_status",
]
