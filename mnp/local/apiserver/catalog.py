"""The resource types the server serves: built-in kinds and those defined by established CRDs.

A `ResourceType` is one group/version/resource with everything discovery, OpenAPI, routing, tables
and validation need; `Catalog` holds them and changes when CRDs are created, updated or deleted.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from mnp.local.apiserver import selectors as sel
from mnp.local.apiserver.errors import StatusError

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has a /status subresource
    builtin: bool = True
    verbs: tuple[str, ...] = VERBS
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), hash=False, compare=False)
    fields: dict[str, sel.Getter] = field(default_factory=dict, hash=False, compare=False)
    storage: tuple[str, str] = ("", "")  # (group, plural) whose objects this type shares
    selectable: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_api_version(self) -> tuple[str, str]:
        """apiVersion and kind objects of this type are stored with (events.k8s.io Events are core)."""
        if self.group == "events.k8s.io" and self.plural == "events":
            return "v1", "Event"
        return self.api_version, self.kind

    @property
    def gv_path(self) -> str:
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def store_key(self) -> tuple[str, str]:
        return self.storage if self.storage != ("", "") else (self.group, self.plural)

    def field_getters(self) -> dict[str, sel.Getter]:
        """Field selectors this type supports: metadata name/namespace, its own, a CRD's selectableFields."""
        custom = {path: sel.field_path(path) for path in self.selectable if path}
        return {**sel.COMMON_FIELDS, **self.fields, **custom}


def _b(group: str, version: str, plural: str, kind: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kw.pop("singular", kind.lower()), kind, namespaced, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _b(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        status=True,
        fields=sel.NAMESPACE_FIELDS,
    ),
    _b(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        short_names=("po",),
        categories=("all",),
        status=True,
        fields=sel.POD_FIELDS,
    ),
    _b("", "v1", "nodes", "Node", False, short_names=("no",), status=True, fields=sel.NODE_FIELDS),
    _b("", "v1", "events", "Event", True, short_names=("ev",), fields=sel.EVENT_FIELDS),
    _b("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    _b("", "v1", "secrets", "Secret", True, fields=sel.SECRET_FIELDS),
    _b("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
    _b("", "v1", "services", "Service", True, short_names=("svc",), categories=("all",), status=True),
    _b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        True,
        short_names=("ev",),
        storage=("", "events"),
        fields=sel.NEW_EVENT_FIELDS,
    ),
    _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    _b(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        short_names=("deploy",),
        categories=("all",),
        status=True,
    ),
    _b("apps", "v1", "daemonsets", "DaemonSet", True, short_names=("ds",), categories=("all",), status=True),
    _b(
        "apps", "v1", "replicasets", "ReplicaSet", True, short_names=("rs",), categories=("all",), status=True
    ),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        status=True,
    ),
    _b(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
    ),
    _b(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        verbs=("create",),
    ),
    _b("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, verbs=("create",)),
    _b("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
    _b("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
)
VIRTUAL = frozenset(
    {
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "subjectaccessreviews",
        "selfsubjectreviews",
        "tokenreviews",
    }
)
# Pre-RBAC "root" groups shown first in discovery, as the real server orders them.
_GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "coordination.k8s.io",
    "apiextensions.k8s.io",
)


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD defines (one per served version); raises 422 on a malformed CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    name = (crd.get("metadata") or {}).get("name", "")
    causes: list[tuple[str, str]] = []
    if not group or "." not in group:
        causes.append(("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot'))
    if not plural:
        causes.append(("spec.names.plural", "Required value"))
    if not kind:
        causes.append(("spec.names.kind", "Required value"))
    if name != f"{plural}.{group}":
        causes.append(("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(
            ("spec.scope", f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"')
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "Required value"))
    if versions and sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            ("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        )
    if causes:
        from mnp.local.apiserver.errors import invalid

        raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
    out = []
    for v in versions:
        if not v.get("served", True):
            continue
        sub = v.get("subresources") or {}
        out.append(
            ResourceType(
                group=group,
                version=v["name"],
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                kind=kind,
                namespaced=scope == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in sub,
                builtin=False,
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                selectable=tuple(f.get("jsonPath", "").lstrip(".") for f in v.get("selectableFields") or ()),
            )
        )
    return out


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes version names: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {"": 0, "beta": 1, "alpha": 2}[m[2] or ""]
    return (stage, -int(m[1]), -int(m[3] or 0), version)


class Catalog:
    """Every served resource type, thread-safe; CRDs add and remove theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builtin = list(BUILTINS)
        self._crds: dict[str, list[ResourceType]] = {}
        self.generation = 0  # bumped on every change, for OpenAPI hashes and discovery caches

    def set_crd(self, name: str, types: list[ResourceType]) -> None:
        with self._lock:
            if types:
                self._crds[name] = types
            else:
                self._crds.pop(name, None)
            self.generation += 1

    def all(self) -> list[ResourceType]:
        with self._lock:
            return self._builtin + [t for ts in self._crds.values() for t in ts]

    def find(self, group: str, version: str, plural: str) -> ResourceType:
        for t in self.all():
            if t.group == group and t.version == version and t.plural == plural:
                return t
        raise StatusError(404, "the server could not find the requested resource", "NotFound", {})

    def by_storage(self, key: tuple[str, str]) -> list[ResourceType]:
        return [t for t in self.all() if t.store_key == key]

    def group_versions(self) -> list[tuple[str, list[str]]]:
        """(group, versions) in discovery order, preferred (first declared) version first."""
        groups: dict[str, list[str]] = {}
        for t in self.all():
            versions = groups.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        order = {g: n for n, g in enumerate(_GROUP_ORDER)}
        ranked = [(g, sorted(vs, key=version_priority)) for g, vs in groups.items()]
        return sorted(ranked, key=lambda gv: (order.get(gv[0], len(order)), gv[0]))

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.all() if t.group == group and t.version == version]
