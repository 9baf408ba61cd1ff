"""Pod-specific API: the pods/binding subresource, the one way to set spec.nodeName of an existing pod
(pod specs are otherwise immutable apart from images), as a scheduler does on a real cluster; and
DELETE with a grace period, which leaves a pod bound to a node Terminating until its kubelet is done."""

from __future__ import annotations

from typing import Any

from mnp.local.apiserver import admission as adm
from mnp.local.apiserver.catalog import ResourceType
from mnp.local.apiserver.errors import StatusError, conflict, invalid, not_found
from mnp.local.apiserver.objects import Store, WriteOptions
from mnp.local.apiserver.values import json_copy_sharing_strings


def bind(store: Store, t: ResourceType, ns: str, name: str, body: Any) -> dict[str, Any]:
    """The pods/binding subresource: the one way to set spec.nodeName of an existing pod."""
    target = (body or {}).get("target") if isinstance(body, dict) else None
    node = (target or {}).get("name") if isinstance(target, dict) else None
    if not node:
        raise invalid("Binding", "", name, [("target.name", "Required value")])
    with store.lock:
        old = store.storage.get(t.store_key, ns, name)
        if old is None:
            raise not_found(t.group, t.plural, name)
        current = (old.get("spec") or {}).get("nodeName")
        if current:
            raise conflict("", "pods/binding", name, f'pod {name} is already assigned to node "{current}"')
        new = json_copy_sharing_strings(old)
        new.setdefault("spec", {})["nodeName"] = node
        _mark_scheduled(new, adm.timestamp(store.clock()))
        store.write(t, old, new, WriteOptions())
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _mark_scheduled(pod: dict[str, Any], now: str) -> None:
    """Binding sets PodScheduled=True, as the real binding storage does (podutil.UpdatePodCondition)."""
    status = pod.setdefault("status", {})
    kept = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}, *kept]


def delete(
    store: Store, t: ResourceType, ns: str, name: str, options: dict[str, Any], opts: WriteOptions
) -> dict[str, Any]:
    """DELETE of a pod honouring DeleteOptions.gracePeriodSeconds (query parameter or body)."""
    grace = grace_period(options.get("gracePeriodSeconds"))
    with store.lock:
        store.lifecycle.request_grace = grace
        try:
            return store.delete(t, ns, name, options, opts)
        finally:
            store.lifecycle.request_grace = None


def grace_period(value: Any) -> int | None:
    """gracePeriodSeconds as sent: absent, an integer in a DeleteOptions body, or a query string."""
    if value is None:
        return None
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise StatusError(400, f"invalid gracePeriodSeconds: {value!r}", "BadRequest") from None
