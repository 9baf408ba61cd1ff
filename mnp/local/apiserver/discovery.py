"""Discovery documents: `/version`, legacy `/api`, `/apis`, per group/version resource lists, and the
aggregated form (`apidiscovery.k8s.io` v2 / v2beta1) for clients that ask for it by Accept header.
"""

from __future__ import annotations

from typing import Any

from mnp.local.apiserver.catalog import Catalog, ResourceType

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "mnp-local",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}
STATUS_VERBS = ["get", "patch", "update"]


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(catalog: Catalog) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in catalog.group_versions() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(catalog: Catalog, name: str) -> dict[str, Any] | None:
    for g, vs in catalog.group_versions():
        if g == name and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, vs)}
    return None


def _legacy_resource(t: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": list(t.verbs),
    }
    if t.short_names:
        main["shortNames"] = list(t.short_names)
    if t.categories:
        main["categories"] = list(t.categories)
    out = [main]
    if t.status:
        out.append(
            {
                "name": f"{t.plural}/status",
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": STATUS_VERBS,
            }
        )
    if t.plural == "pods" and t.group == "":
        out.append(
            {
                "name": "pods/binding",
                "singularName": "",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    if t.plural == "serviceaccounts" and t.group == "":
        out.append(
            {
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": True,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }
        )
    return out


def resource_list(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    types = catalog.resources(group, version)
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [r for t in types for r in _legacy_resource(t)],
    }


def aggregated_kind(accept: str) -> str | None:
    """The apidiscovery version a client asked for in Accept, if it asked for the aggregated form."""
    if "as=APIGroupDiscoveryList" not in accept:
        return None
    for part in accept.split(","):
        if "as=APIGroupDiscoveryList" in part and "g=apidiscovery.k8s.io" in part:
            if "v=v2beta1" in part:
                return "v2beta1"
            if "v=v2" in part:
                return "v2"
    return None


def _agg_resource(t: ResourceType) -> dict[str, Any]:
    gvk = {"group": t.group, "version": t.version, "kind": t.kind}
    out: dict[str, Any] = {
        "resource": t.plural,
        "responseKind": gvk,
        "scope": "Namespaced" if t.namespaced else "Cluster",
        "singularResource": t.singular,
        "verbs": list(t.verbs),
    }
    if t.short_names:
        out["shortNames"] = list(t.short_names)
    if t.categories:
        out["categories"] = list(t.categories)
    subs = []
    if t.status:
        subs.append({"subresource": "status", "responseKind": gvk, "verbs": STATUS_VERBS})
    if t.plural == "serviceaccounts" and t.group == "":
        subs.append(
            {
                "subresource": "token",
                "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
                "verbs": ["create"],
            }
        )
    if subs:
        out["subresources"] = subs
    return out


def aggregated(catalog: Catalog, legacy_core: bool, version: str) -> dict[str, Any]:
    """`/api` (core group only) or `/apis` (every named group) in the aggregated form."""
    items = []
    for g, vs in catalog.group_versions():
        if bool(g) == legacy_core:
            continue
        items.append(
            {
                "metadata": {"name": g, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "freshness": "Current",
                        "resources": [_agg_resource(t) for t in catalog.resources(g, v)],
                    }
                    for v in vs
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
