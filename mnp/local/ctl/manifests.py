"""Manifests for `mnp local apply/delete`: read as `mnp compile -f` reads them, put in the order a
server needs them (CRDs, then Namespaces, then the rest as written), and defaulted like kubectl does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mnp.offline import ManifestError, load_documents

CRD_KIND = "CustomResourceDefinition"
CRD_GROUP = "apiextensions.k8s.io"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object from a file, with where it came from (`file#N`)."""

    source: str
    obj: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion") or "")

    @property
    def group(self) -> str:
        return group_of(self.api_version)

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(_meta(self.obj).get("name") or "")

    @property
    def namespace(self) -> str:
        return str(_meta(self.obj).get("namespace") or "")

    @property
    def is_crd(self) -> bool:
        return self.kind == CRD_KIND and self.group == CRD_GROUP

    def crd_serves(self) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every served version a CRD manifest defines."""
        spec = self.obj.get("spec") or {}
        kind = str((spec.get("names") or {}).get("kind") or "")
        versions = [v for v in spec.get("versions") or [] if isinstance(v, Mapping) and v.get("served")]
        return {(f"{spec.get('group')}/{v.get('name')}", kind) for v in versions}

    def display(self) -> str:
        """`kind[.group]/name` as kubectl prints it."""
        return self.kind.lower() + (f".{self.group}" if self.group else "") + f"/{self.name}"


def group_of(api_version: str) -> str:
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def load_manifests(paths: Iterable[str]) -> list[Manifest]:
    """Every object in the files (dirs: sorted *.yaml/*.yml/*.json; `-`: stdin; Lists unpacked).

    Raises ManifestError for unreadable files and for objects without apiVersion or metadata.name.
    """
    out = []
    for doc in load_documents(paths):
        m = Manifest(doc.source, doc.obj)
        if not m.api_version:
            raise ManifestError("apiVersion", f"{m.kind} has no apiVersion", doc.source)
        if not m.name:
            raise ManifestError("metadata.name", f"{m.kind} has no name", doc.source)
        out.append(m)
    return out


def _rank(m: Manifest) -> int:
    if m.is_crd:
        return 0
    return 1 if m.kind == "Namespace" and m.group == "" else 2


def apply_order(manifests: Iterable[Manifest]) -> list[Manifest]:
    """CRDs first, then Namespaces, then the rest, each group in file order (the sort is stable)."""
    return sorted(manifests, key=_rank)


def delete_order(manifests: Iterable[Manifest]) -> list[Manifest]:
    """The reverse of the apply order: contents before their namespaces, custom objects before CRDs."""
    return list(reversed(apply_order(manifests)))


def with_namespace(m: Manifest, namespaced: bool) -> Manifest:
    """A namespaced object without a namespace goes to "default"; a cluster-scoped one loses it."""
    if namespaced == bool(m.namespace):
        return m
    obj = copy.deepcopy(dict(m.obj))
    meta = dict(_meta(obj))
    if namespaced:
        meta["namespace"] = DEFAULT_NAMESPACE
    else:
        meta.pop("namespace", None)
    obj["metadata"] = meta
    return Manifest(m.source, obj)


__all__ = [
    "CRD_KIND",
    "Manifest",
    "ManifestError",
    "apply_order",
    "delete_order",
    "group_of",
    "load_manifests",
    "with_namespace",
]
