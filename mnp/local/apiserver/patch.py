"""Patch formats: JSON merge (RFC 7386), JSON patch (RFC 6902) and strategic merge for built-in kinds.

Strategic merge follows the patch directives kubectl sends (`$patch`, `$setElementOrder/`,
`$retainKeys`, `$deleteFromPrimitiveList/`) with the merge keys of the built-in types that kubectl
apply relies on; storing a directive literally would corrupt the object, so every `$` key is consumed.
"""

from __future__ import annotations

import json
from typing import Any

from mnp.local.apiserver.errors import StatusError
from mnp.local.apiserver.values import json_copy

# Keyed lists of the built-in types (field name → merge key), as in the Go struct tags.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "podIPs": "ip",
    "addresses": "type",
    "images": "names",
}
# Lists of scalars merged as sets (`patchStrategy:"merge"` without a key).
MERGE_SETS = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise StatusError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise StatusError(
                422,
                f"the server rejected our request due to an error in our request: "
                f"path {path!r} does not exist",
            )
    return cur


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise StatusError(422, f"add operation does not apply: index {last!r} out of range at {path!r}")
    else:
        raise StatusError(422, f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    if not parts:
        raise StatusError(422, "cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise StatusError(422, f"remove operation does not apply: doc is missing path: {path!r}")


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 including `test`; a failed operation is 422 as on the real server."""
    if not isinstance(ops, list):
        raise StatusError(400, "json patch must be a list of operations")
    doc = json_copy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise StatusError(400, f"invalid json patch operation: {json.dumps(op)}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise StatusError(400, f"missing value for {kind} operation at {path!r}")
        if kind == "add":
            doc = _add(doc, parts, json_copy(op["value"]), path)
        elif kind == "remove":
            _remove(doc, parts, path)
        elif kind == "replace":
            _walk(doc, parts, path)
            if parts:
                _remove(doc, parts, path)
            doc = _add(doc, parts, json_copy(op["value"]), path)
        elif kind in ("move", "copy"):
            src = op.get("from", "")
            value = _walk(doc, _pointer(src), src)
            if kind == "move":
                value = _remove(doc, _pointer(src), src)
            doc = _add(doc, parts, json_copy(value), path)
        elif kind == "test":
            if _walk(doc, parts, path) != op["value"]:
                raise StatusError(
                    422,
                    f"the server rejected our request due to an error in our request: "
                    f"testing value {path} failed",
                )
        else:
            raise StatusError(400, f"unexpected json patch operation {kind!r}")
    return doc


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge patch of built-in objects (see module docstring for what is understood)."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    if patch.get("$patch") == "replace":
        return {k: json_copy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            drop = set(json.dumps(v) for v in (value or []))
            result[name] = [v for v in result.get(name) or [] if json.dumps(v) not in drop]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, key)
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _order(result[name], order, name)
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_list(current: Any, patch: list[Any], field: str) -> list[Any]:
    cur = list(current) if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    key = _list_key(field, patch)
    if key and all(isinstance(i, dict) for i in patch):
        for item in patch:
            if key not in item:
                cur.append(_strip(item))
                continue
            idx = next(
                (n for n, c in enumerate(cur) if isinstance(c, dict) and c.get(key) == item[key]), None
            )
            if item.get("$patch") == "delete":
                if idx is not None:
                    cur.pop(idx)
            elif idx is None:
                cur.append(_strip(item))
            else:
                cur[idx] = strategic_merge(cur[idx], item, field)
        return cur
    if field in MERGE_SETS:
        out = list(cur)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    return [_strip(i) for i in patch]


def _list_key(field: str, items: list[Any]) -> str | None:
    """The merge key of a list; `ports` is keyed by containerPort in containers, by port in Services."""
    if (
        field == "ports"
        and not any(isinstance(i, dict) and "containerPort" in i for i in items)
        and any(isinstance(i, dict) and "port" in i for i in items)
    ):
        return "port"
    return MERGE_KEYS.get(field)


def _strip(value: Any) -> Any:
    """Drop directives and nulls from a value that is inserted rather than merged."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _order(items: list[Any], order: list[Any], field: str) -> list[Any]:
    key = _list_key(field, order or items)

    def ident(v: Any) -> str:
        return json.dumps(v.get(key) if key and isinstance(v, dict) else v, sort_keys=True)

    pos = {ident(v): n for n, v in enumerate(order)}
    listed = sorted((v for v in items if ident(v) in pos), key=lambda v: pos[ident(v)])
    return listed + [v for v in items if ident(v) not in pos]
