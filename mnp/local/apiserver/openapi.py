"""OpenAPI v3: the index and one small document per group/version.

What matters to kubectl: every served kind has a PATCH operation tagged with its
group-version-kind and a `fieldValidation` parameter (so `kubectl apply` validates on the server),
custom resources never advertise strategic merge patch, and CRD schemas are in `components`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from mnp.local.apiserver.catalog import Catalog, ResourceType

_PATCH_TYPES_CR = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
_QUERY = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _schema_name(t: ResourceType) -> str:
    group = ".".join(reversed(t.group.split("."))) if t.group else "io.k8s.api.core"
    return f"{group}.{t.version}.{t.kind}"


def _ops(t: ResourceType, item: bool) -> dict[str, Any]:
    gvk = {"group": t.group, "version": t.version, "kind": t.kind}
    ref = {"$ref": f"#/components/schemas/{_schema_name(t)}"}
    body = {"content": {"application/json": {"schema": ref}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}

    def op(action: str, params: tuple[str, ...], request: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "operationId": f"{action}{t.kind}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": _params(*params),
            "responses": ok,
        }
        if request is not None:
            out["requestBody"] = request
        return out

    if not item:
        ops = {"get": op("list", ("labelSelector", "fieldSelector", "watch", "resourceVersion", "limit"))}
        if "create" in t.verbs:
            ops["post"] = op("post", _QUERY, body)
        return ops
    patch_types = _PATCH_TYPES_CR if not t.builtin else _PATCH_TYPES_CR
    return {
        "get": op("get", ("pretty",)),
        "put": op("put", _QUERY, body),
        "patch": op(
            "patch",
            (*_QUERY, "force"),
            {"content": {ct: {"schema": {"type": "object"}} for ct in patch_types}},
        ),
        "delete": op("delete", ("dryRun", "gracePeriodSeconds", "propagationPolicy")),
    }


def _schema(t: ResourceType) -> dict[str, Any]:
    gvk = [{"group": t.group, "version": t.version, "kind": t.kind}]
    base = dict(t.schema) if t.schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {**base, "x-kubernetes-group-version-kind": gvk}


def document(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    types = catalog.resources(group, version)
    if not types:
        return None
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    for t in types:
        if "get" not in t.verbs:
            paths[f"{root}/{t.plural}"] = {"post": _ops(t, False)["post"]}
            continue
        if t.namespaced:
            base = f"{root}/namespaces/{{namespace}}/{t.plural}"
            paths[f"{root}/{t.plural}"] = {"get": _ops(t, False)["get"]}
        else:
            base = f"{root}/{t.plural}"
        paths[base] = _ops(t, False)
        paths[f"{base}/{{name}}"] = _ops(t, True)
        if t.status:
            paths[f"{base}/{{name}}/status"] = _ops(t, True)
    schemas = {_schema_name(t): _schema(t) for t in types}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


class OpenAPI:
    """Documents cached per catalog generation, each with the hash its URL carries."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        self._generation = -1
        self._docs: dict[str, tuple[bytes, str]] = {}

    def _refresh(self) -> None:
        if self._generation == self._catalog.generation:
            return
        docs = {}
        for g, vs in self._catalog.group_versions():
            for v in vs:
                doc = document(self._catalog, g, v)
                if doc is None:
                    continue
                raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
                key = f"apis/{g}/{v}" if g else f"api/{v}"
                docs[key] = (raw, hashlib.sha512(raw).hexdigest()[:64].upper())
        self._docs = docs
        self._generation = self._catalog.generation

    def index(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            return {
                "paths": {
                    k: {"serverRelativeURL": f"/openapi/v3/{k}?hash={h}"} for k, (_, h) in self._docs.items()
                }
            }

    def doc(self, key: str) -> bytes | None:
        with self._lock:
            self._refresh()
            found = self._docs.get(key)
            return found[0] if found else None
