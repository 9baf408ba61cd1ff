"""Server-side apply, minimal: merge a manager's configuration and remember which fields it set.

Maps merge, keyed lists merge by key (built-in merge keys, or a CRD's `x-kubernetes-list-map-keys`),
other lists are replaced. `managedFields` records each applier's fields (FieldsV1), so a field the same
manager drops from its configuration is removed, unless another applier also sets it; changing a field
another applier owns is a conflict unless forced. Not modelled: ownership taken by plain updates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mnp.local.apiserver.values import json_copy

Path = tuple[str, ...]
ListKeys = Callable[[tuple[str, ...]], tuple[str, ...]]
_META_TRACKED = ("labels", "annotations", "finalizers", "ownerReferences")


def _item_id(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def field_paths(config: dict[str, Any], list_keys: ListKeys) -> set[Path]:
    """Leaf paths (FieldsV1 segments) a configuration sets."""
    out: set[Path] = set()
    for key, value in config.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata" and isinstance(value, dict):
            for mk in _META_TRACKED:
                if mk in value:
                    _collect(value[mk], ("f:metadata", f"f:{mk}"), ("metadata", mk), list_keys, out)
            continue
        _collect(value, (f"f:{key}",), (key,), list_keys, out)
    return out


def _collect(value: Any, path: Path, names: tuple[str, ...], list_keys: ListKeys, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _collect(v, (*path, f"f:{k}"), (*names, k), list_keys, out)
        return
    keys = list_keys(names) if isinstance(value, list) else ()
    if keys and isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        for item in value:
            ipath = (*path, _item_id(item, keys))
            out.add((*ipath, "."))
            for k, v in item.items():
                _collect(v, (*ipath, f"f:{k}"), names, list_keys, out)
        return
    out.add(path)


def merge_config(live: Any, config: Any, list_keys: ListKeys, names: tuple[str, ...] = ()) -> Any:
    if isinstance(config, dict):
        result = dict(live) if isinstance(live, dict) else {}
        for k, v in config.items():
            result[k] = merge_config(result.get(k), v, list_keys, (*names, k))
        return result
    if isinstance(config, list):
        keys = list_keys(names)
        if keys and isinstance(live, list) and all(isinstance(i, dict) for i in config + live):
            merged = [json_copy(i) for i in live]
            for item in config:
                ident = _item_id(item, keys)
                idx = next((n for n, c in enumerate(merged) if _item_id(c, keys) == ident), None)
                if idx is None:
                    merged.append(json_copy(item))
                else:
                    merged[idx] = merge_config(merged[idx], item, list_keys, names)
            return merged
        return json_copy(config)
    return json_copy(config)


def remove_paths(obj: dict[str, Any], paths: set[Path], list_keys: ListKeys) -> None:
    """Delete the given leaf paths from obj (deepest first); missing ones are ignored."""
    for path in sorted(paths, key=len, reverse=True):
        _remove(obj, list(path), (), list_keys)


def _remove(cur: Any, path: list[str], names: tuple[str, ...], list_keys: ListKeys) -> None:
    seg = path[0]
    if seg.startswith("f:") and isinstance(cur, dict):
        name = seg[2:]
        if len(path) == 1:
            cur.pop(name, None)
            return
        if name in cur:
            _remove(cur[name], path[1:], (*names, name), list_keys)
    elif seg.startswith("k:") and isinstance(cur, list):
        keys = list_keys(names)
        for n, item in enumerate(cur):
            if isinstance(item, dict) and _item_id(item, keys) == seg:
                if path[1:] == ["."]:
                    cur.pop(n)
                elif len(path) > 1:
                    _remove(item, path[1:], names, list_keys)
                return


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for seg in path:
            node = node.setdefault(seg, {})
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for seg, sub in fields.items():
        path = (*prefix, seg)
        if isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


class ApplyConflict(Exception):
    """Fields another applier owns would change: (manager, field path) pairs."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        super().__init__(conflicts)
        self.conflicts = conflicts


_MISSING = object()


def _value(cur: Any, path: Path, names: tuple[str, ...], list_keys: ListKeys) -> Any:
    for seg in path:
        if seg == ".":
            break
        if seg.startswith("f:") and isinstance(cur, dict):
            names = (*names, seg[2:])
            cur = cur.get(seg[2:], _MISSING)
        elif seg.startswith("k:") and isinstance(cur, list):
            keys = list_keys(names)
            cur = next((i for i in cur if isinstance(i, dict) and _item_id(i, keys) == seg), _MISSING)
        else:
            return _MISSING
    return cur


def path_text(path: Path) -> str:
    """`.spec.containers[name="web"].image`: how the real server names a field in a conflict."""
    out = ""
    for seg in path:
        if seg.startswith("f:"):
            out += "." + seg[2:]
        elif seg.startswith("k:"):
            keys = json.loads(seg[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
    return out


def server_side_apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    manager: str,
    list_keys: ListKeys,
    now: str,
    force: bool = False,
) -> dict[str, Any]:
    """The object after `manager` applies `config` to `live` (None: create).

    Raises ApplyConflict when another applier owns a field this configuration changes, unless
    `force`, which takes the fields over.
    """
    new_paths = field_paths(config, list_keys)
    base = json_copy(live) if live is not None else {}
    entries = list((base.get("metadata") or {}).get("managedFields") or [])
    conflicts: list[tuple[str, str]] = []
    for n, e in enumerate(entries):
        if e.get("manager") == manager or e.get("operation") != "Apply":
            continue
        owned = from_fields_v1(e.get("fieldsV1") or {})
        taken = {
            p for p in owned & new_paths if _value(base, p, (), list_keys) != _value(config, p, (), list_keys)
        }
        if taken and force:
            entries[n] = {**e, "fieldsV1": to_fields_v1(owned - taken)}
        conflicts += [(str(e.get("manager")), path_text(p)) for p in sorted(taken)]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    mine = [e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"]
    others: set[Path] = set()
    for e in entries:
        if e not in mine and e.get("operation") == "Apply":
            others |= from_fields_v1(e.get("fieldsV1") or {})
    old_paths: set[Path] = set()
    for e in mine:
        old_paths |= from_fields_v1(e.get("fieldsV1") or {})
    dropped = {
        p for p in old_paths - new_paths - others if not any(q[: len(p)] == p for q in new_paths | others)
    }
    remove_paths(base, dropped, list_keys)
    merged: dict[str, Any] = merge_config(base, config, list_keys)
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": config.get("apiVersion", ""),
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(new_paths),
    }
    kept = [e for e in entries if e not in mine]
    merged.setdefault("metadata", {})["managedFields"] = [*kept, entry]
    return merged
