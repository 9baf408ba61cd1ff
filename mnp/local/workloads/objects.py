"""What the workload controllers read from and write to the API: pod predicates, owner references,
conditions, template hashes, and the actions a reconcile asks the runner to perform.

Reconcilers are pure functions from cached objects to a list of actions; only the runner does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.kube.resources import Resource

Raw = dict[str, Any]
# The real server's alphabet for generated suffixes and hashes: no vowels, no confusable digits.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class Create:
    """POST `body` (a pod usually named by generateName, so the server picks the random suffix)."""

    resource: Resource
    namespace: str
    body: Raw = field(compare=False)
    owner: str = ""  # uid of the controller whose expectations this create raises ("" = none)


@dataclass(frozen=True, slots=True)
class Delete:
    """DELETE, with the object's default grace period unless `grace_seconds` is given."""

    resource: Resource
    namespace: str
    name: str
    uid: str = ""  # precondition: never delete a newer object of the same name
    owner: str = ""
    grace_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Patch:
    """A merge patch guarded by the resourceVersion it was computed from (409 → reconcile again)."""

    resource: Resource
    namespace: str
    name: str
    patch: Raw = field(compare=False)
    resource_version: str = ""
    sub: str = ""


@dataclass(frozen=True, slots=True)
class Bind:
    """POST pods/binding: the scheduler's decision."""

    namespace: str
    name: str
    node: str


@dataclass(frozen=True, slots=True)
class Record:
    """An Event about `about` from `component` (as the real controller of that name writes it)."""

    component: str
    about: Raw = field(compare=False)
    type: str
    reason: str
    message: str


Action = Create | Delete | Patch | Bind | Record


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def uid(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid") or "")


def name(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def namespace(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace") or "")


def generation(obj: Mapping[str, Any]) -> int:
    return int(meta(obj).get("generation") or 0)


def resource_version(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("resourceVersion") or "")


def terminating(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    s = obj.get("status")
    return s if isinstance(s, dict) else {}


def controller_uid(obj: Mapping[str, Any]) -> str:
    """The uid of the object's controlling owner (ownerReference with controller: true), else ""."""
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def controller_ref(owner: Mapping[str, Any], kind: str, api_version: str = "apps/v1") -> Raw:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for c in status(obj).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return {}


def pod_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward replicas: not being deleted and not finished (controller.FilterActivePods)."""
    return not terminating(pod) and status(pod).get("phase") not in TERMINAL_PHASES


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return pod_active(pod) and condition(pod, "Ready").get("status") == "True"


def node_ready(node: Mapping[str, Any]) -> bool:
    return condition(node, "Ready").get("status") == "True" and not terminating(node)


def owned_by(objs: Iterable[Raw], owner: Mapping[str, Any]) -> list[Raw]:
    """The objects the owner controls, sorted by name (reconcilers must not depend on cache order)."""
    owner_uid = uid(owner)
    return sorted((o for o in objs if controller_uid(o) == owner_uid), key=name)


def requirement_matches(req: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    """One matchExpressions entry (In, NotIn, Exists, DoesNotExist; Gt and Lt for node selectors)."""
    key, op, wanted = req.get("key", ""), req.get("operator", ""), list(req.get("values") or [])
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            have, limit = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels AND matchExpressions); None or empty selects nothing here, as a
    controller must never claim every pod of its namespace."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(requirement_matches(r, labels) for r in selector.get("matchExpressions") or [])


def template_hash(template: Any) -> str:
    """A short stable hash of a pod template, spelled like the real controllers' (safe alphabet).

    The real one hashes the Go structure with FNV-32a; ours hashes canonical JSON the same way, so
    values differ from a real cluster's but are equally stable and equally shaped.
    """
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(h))


def with_condition(
    conditions: Iterable[Mapping[str, Any]], kind: str, state: str, reason: str, message: str, now: str
) -> list[Raw]:
    """Conditions with `kind` set; lastTransitionTime moves only when the status changes."""
    out: list[Raw] = []
    found = False
    for c in conditions:
        if c.get("type") != kind:
            out.append(dict(c))
            continue
        found = True
        since = c.get("lastTransitionTime") if c.get("status") == state else now
        out.append(
            {**c, "status": state, "reason": reason, "message": message, "lastTransitionTime": since or now}
        )
    if not found:
        out.append(
            {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": now}
        )
    return out


def status_patch(resource: Resource, obj: Mapping[str, Any], new_status: Mapping[str, Any]) -> list[Action]:
    """A status write when anything in `new_status` differs from the object's status, else nothing."""
    current = status(obj)
    if all(current.get(k) == v for k, v in new_status.items()):
        return []
    return [
        Patch(
            resource,
            namespace(obj),
            name(obj),
            {"status": dict(new_status)},
            resource_version(obj),
            sub="status",
        )
    ]


def pod_from_template(template: Mapping[str, Any], owner: Raw, ns: str, prefix: str, labels: Raw) -> Raw:
    """A pod for a controller: the template's metadata and spec, extra labels, controller owner."""
    tmeta = dict(template.get("metadata") or {})
    body: Raw = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{prefix}-",
            "namespace": ns,
            "labels": {**(tmeta.get("labels") or {}), **labels},
            "ownerReferences": [owner],
        },
        "spec": json.loads(json.dumps(template.get("spec") or {})),
    }
    if tmeta.get("annotations"):
        body["metadata"]["annotations"] = dict(tmeta["annotations"])
    return body
