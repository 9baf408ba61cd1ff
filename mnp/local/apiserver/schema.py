"""Structural schemas of CustomResourceDefinitions: validation, pruning and defaulting.

`check` walks an object along its `openAPIV3Schema`, returns problems worded like the real server
(`spec.node: Invalid value: ...`) and the unknown fields it pruned, so the caller can answer
422 Invalid or, for `fieldValidation=Strict`, 400 naming the unknown field.
"""

from __future__ import annotations

import datetime
import json
import marshal
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mnp.local.apiserver.values import intern_keys, json_copy

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


@dataclass(slots=True)
class Findings:
    errors: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _show(v: Any) -> str:
    return (
        json.dumps(v)
        if isinstance(v, str)
        else (json.dumps(v) if not isinstance(v, dict | list) else _type_name(v))
    )


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(
    schema: dict[str, Any], obj: dict[str, Any], validated: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Findings]:
    """Validate, default and prune a custom resource; returns it pruned and defaulted, and what was
    found. The result is built from `obj`'s own containers where it can (the caller gives `obj` up),
    with interned keys, as stored objects have them.

    `validated` is the stored object when this same schema validated it: a top-level field equal to
    its value there, with the same JSON types, is not judged again (Kubernetes' validation ratcheting:
    unchanged values are not re-validated) and the result shares that already pruned and defaulted
    value.
    """
    found = Findings()
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for key, given in obj.items():
        if type(key) is str:
            key = sys.intern(key)
        if key in ("apiVersion", "kind", "metadata"):
            out[key] = intern_keys(given)
            continue
        sub = props.get(key)
        if sub is None:
            if schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = intern_keys(given)
            else:
                found.unknown.append(key)
            continue
        if validated is not None and key in validated and _unchanged(validated[key], given):
            out[key] = validated[key]
            continue
        value = _node(sub, given, key, found, structural=True)
        if value is not _DROP:
            out[key] = value
    _apply_defaults(schema, out)
    for req in schema.get("required") or []:
        if req not in out:
            found.errors.append((req, "Required value"))
    _value_checks(schema, out, "", found)
    return out, found


def _unchanged(stored: Any, given: Any) -> bool:
    """Equal with the same JSON types: 1, 1.0 and true are equal in Python but not to a schema."""
    if stored is given:
        return True
    if stored != given:
        return False
    try:
        return marshal.dumps(stored, 2) == marshal.dumps(given, 2)  # bool, int and float tagged apart
    except ValueError:
        return False


class _Drop:
    pass


_DROP: Any = _Drop()


def _apply_defaults(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    for key, sub in (schema.get("properties") or {}).items():
        if key not in obj and "default" in sub:
            obj[key] = json_copy(sub["default"])


# Flat objects (every value a string, number or bool) that validated clean, by (schema, content): the
# same peers, ports and conditions recur in many objects, and a PodNetworkRuleset has hundreds. The
# schema object is kept in the entry (so its id is not reused while the entry lives) and compared.
_FlatKey = tuple[int, bool, tuple[tuple[str, Any], ...], tuple[type, ...]]
_FLAT_CLEAN: dict[_FlatKey, tuple[dict[str, Any], dict[str, Any]]] = {}
_FLAT_CLEAN_MAX = 1 << 15
_SCALARS = frozenset({str, int, float, bool})


def _flat_key(schema: dict[str, Any], value: Any, structural: bool) -> _FlatKey | None:
    if type(value) is not dict or not value:
        return None
    types = tuple(map(type, value.values()))
    if not _SCALARS.issuperset(types):
        return None
    # The types are part of the key: 1, 1.0 and True are equal, but only one is an integer.
    return (id(schema), structural, tuple(value.items()), types)


def _remembered(schema: dict[str, Any], value: Any, structural: bool) -> dict[str, Any] | None:
    """A copy of what a flat object that validated clean under this schema came out as, if known."""
    key = _flat_key(schema, value, structural)
    hit = _FLAT_CLEAN.get(key) if key is not None else None
    return dict(hit[1]) if hit is not None and hit[0] is schema else None


def _node(schema: dict[str, Any], value: Any, path: str, found: Findings, structural: bool) -> Any:
    key = _flat_key(schema, value, structural)
    if key is None:
        return _node_once(schema, value, path, found, structural)
    hit = _FLAT_CLEAN.get(key)
    if hit is not None and hit[0] is schema:
        return dict(hit[1])
    errors, unknown = len(found.errors), len(found.unknown)
    out = _node_once(schema, value, path, found, structural)
    if len(found.errors) == errors and len(found.unknown) == unknown and type(out) is dict:
        if len(_FLAT_CLEAN) >= _FLAT_CLEAN_MAX:
            _FLAT_CLEAN.clear()
        _FLAT_CLEAN[key] = (schema, dict(out))
    return out


def _node_once(schema: dict[str, Any], value: Any, path: str, found: Findings, structural: bool) -> Any:
    if value is None:
        if schema.get("nullable"):
            return None
        # The real server prunes nulls of non-nullable fields rather than refusing them.
        return _DROP if structural else value
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            found.errors.append(
                (
                    path,
                    f'Invalid value: "{_type_name(value)}": {path} in body must be of '
                    f'type integer or string: "{_type_name(value)}"',
                )
            )
            return value
    elif "type" in schema and not _type_ok(schema["type"], value):
        got = _type_name(value)
        found.errors.append(
            (path, f'Invalid value: "{got}": {path} in body must be of type {schema["type"]}: "{got}"')
        )
        return value
    if isinstance(value, dict):
        value = _object(schema, value, path, found, structural)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            new = []
            for n, item in enumerate(value):
                v = _remembered(items, item, structural)  # before making the path: most items hit
                if v is None:
                    v = _node(items, item, f"{path}[{n}]", found, structural)
                if v is not _DROP:
                    new.append(v)
            value = new
        else:
            value = intern_keys(value)
        _list_type(schema, value, path, found)
    _value_checks(schema, value, path, found)
    return value


def _type_ok(want: str, value: Any) -> bool:
    if want == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if want == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    t = _TYPES.get(want)
    return t is None or isinstance(value, t)


def _object(
    schema: dict[str, Any], value: dict[str, Any], path: str, found: Findings, structural: bool
) -> dict[str, Any]:
    if schema.get("x-kubernetes-embedded-resource") and structural:
        keep = {k: value[k] for k in ("apiVersion", "kind", "metadata") if k in value}
    else:
        keep = {}
    props = schema.get("properties")
    addl = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    try:
        out: dict[str, Any] = dict(zip(map(sys.intern, value), value.values(), strict=True))
    except TypeError:  # a key that is not a string (YAML)
        out = dict(value)
    for key in list(out):
        sub = (props or {}).get(key)
        if sub is None and isinstance(addl, dict):
            sub = addl
        if sub is not None:
            v = _node(sub, out[key], _join(path, key), found, structural)
            if v is _DROP:
                del out[key]
            else:
                out[key] = v
        elif structural and not preserve and addl is not True and key not in keep:
            found.unknown.append(_join(path, key))
            del out[key]
        else:  # kept as sent: an embedded object's metadata, preserved unknown fields
            out[key] = intern_keys(out[key])
    if structural:
        _apply_defaults(schema, out)
    for req in schema.get("required") or []:
        if req not in out:
            found.errors.append((_join(path, req), "Required value"))
    return out


def _list_type(schema: dict[str, Any], value: list[Any], path: str, found: Findings) -> None:
    kind = schema.get("x-kubernetes-list-type")
    if kind == "set":
        seen: set[str] = set()
        for n, item in enumerate(value):
            k = json.dumps(item, sort_keys=True)
            if k in seen:
                found.errors.append((f"{path}[{n}]", f"Duplicate value: {_show(item)}"))
            seen.add(k)
    elif kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[str] = set()
        for n, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            k = json.dumps({key: item.get(key) for key in keys}, sort_keys=True)
            if k in seen_keys:
                found.errors.append((f"{path}[{n}]", f"Duplicate value: {k}"))
            seen_keys.add(k)


def _value_checks(schema: dict[str, Any], value: Any, path: str, found: Findings) -> None:
    where = path or "<root>"
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(e) for e in schema["enum"])
        found.errors.append((path, f"Unsupported value: {_show(value)}: supported values: {allowed}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.errors.append((path, f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            found.errors.append(
                (
                    path,
                    f"Invalid value: {_show(value)}: {where} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            found.errors.append(
                (path, f"Invalid value: {_show(value)}: {where} in body should match '{schema['pattern']}'")
            )
        fmt = schema.get("format")
        if fmt == "date-time" and not _is_datetime(value):
            found.errors.append(
                (
                    path,
                    f"Invalid value: {_show(value)}: {where} in body must be of type "
                    f"date-time: {_show(value)}",
                )
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            bad = value <= schema["minimum"] if schema.get("exclusiveMinimum") else value < schema["minimum"]
            if bad:
                rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                found.errors.append(
                    (path, f"Invalid value: {value}: {where} in body should be {rel} {schema['minimum']}")
                )
        if "maximum" in schema:
            bad = value >= schema["maximum"] if schema.get("exclusiveMaximum") else value > schema["maximum"]
            if bad:
                rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                found.errors.append(
                    (path, f"Invalid value: {value}: {where} in body should be {rel} {schema['maximum']}")
                )
        fmt = schema.get("format")
        if fmt == "int32" and not -(2**31) <= value < 2**31:
            found.errors.append((path, f"Invalid value: {value}: {where} in body must be of type int32"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.errors.append(
                (path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            found.errors.append(
                (
                    path,
                    f"Invalid value: {len(value)}: {where} in body should have at least "
                    f"{schema['minItems']} items",
                )
            )
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            found.errors.append(
                (path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} items")
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            found.errors.append(
                (
                    path,
                    f"Invalid value: {len(value)}: {where} in body should have at least "
                    f"{schema['minProperties']} properties",
                )
            )
    for sub in schema.get("allOf") or []:
        _value_checks_full(sub, value, path, found)
    if "anyOf" in schema and not any(_passes(s, value, path) for s in schema["anyOf"]):
        found.errors.append(
            (
                path,
                f"Invalid value: {_show(value)}: {where} in body must validate at least one schema (anyOf)",
            )
        )
    if "oneOf" in schema and sum(_passes(s, value, path) for s in schema["oneOf"]) != 1:
        found.errors.append(
            (
                path,
                f"Invalid value: {_show(value)}: {where} in body must validate one and "
                "only one schema (oneOf)",
            )
        )
    if "not" in schema and _passes(schema["not"], value, path):
        found.errors.append(
            (path, f"Invalid value: {_show(value)}: {where} in body must not validate the schema (not)")
        )


def _value_checks_full(schema: dict[str, Any], value: Any, path: str, found: Findings) -> None:
    """A value-validation sub-schema (allOf/anyOf/oneOf/not): no pruning, no defaults."""
    if value is None:
        return
    if "type" in schema and not _type_ok(schema["type"], value):
        found.errors.append(
            (
                path,
                f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                f'{schema["type"]}: "{_type_name(value)}"',
            )
        )
        return
    if isinstance(value, dict):
        for req in schema.get("required") or []:
            if req not in value:
                found.errors.append((_join(path, req), "Required value"))
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                _value_checks_full(sub, value[key], _join(path, key), found)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            _value_checks_full(schema["items"], item, f"{path}[{n}]", found)
    _value_checks(schema, value, path, found)


def _passes(schema: dict[str, Any], value: Any, path: str) -> bool:
    probe = Findings()
    _value_checks_full(schema, value, path, probe)
    return not probe.errors


def _is_datetime(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def list_map_keys(schema: dict[str, Any] | None, names: tuple[str, ...]) -> tuple[str, ...]:
    """The `x-kubernetes-list-map-keys` of the list at field path `names` (for server-side apply)."""
    node = schema
    for name in names:
        if not isinstance(node, dict):
            return ()
        if node.get("type") == "array":
            node = node.get("items")
            if not isinstance(node, dict):
                return ()
        node = (node.get("properties") or {}).get(name) or (
            node.get("additionalProperties") if isinstance(node.get("additionalProperties"), dict) else None
        )
    if isinstance(node, dict) and node.get("x-kubernetes-list-type") == "map":
        return tuple(node.get("x-kubernetes-list-map-keys") or ())
    return ()
