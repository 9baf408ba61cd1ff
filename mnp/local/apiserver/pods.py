"""Pod-specific API: the pods/binding subresource, the one way to set spec.nodeName of an existing pod
(pod specs are otherwise immutable apart from images), as a scheduler does on a real cluster."""

from __future__ import annotations

import copy
from typing import Any

from mnp.local.apiserver.catalog import ResourceType
from mnp.local.apiserver.errors import conflict, invalid, not_found
from mnp.local.apiserver.objects import Store, WriteOptions


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
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["nodeName"] = node
        store.write(t, old, new, WriteOptions())
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
