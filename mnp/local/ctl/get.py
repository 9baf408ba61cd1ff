"""`mnp local get KIND [NAME]`: one object, or a `List`, as YAML, JSON, names, or the server's table."""

from __future__ import annotations

from typing import Any, TextIO

from mnp.api.errors import NotFound
from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.kinds import Kind, UnknownKind
from mnp.local.ctl.manifests import DEFAULT_NAMESPACE
from mnp.local.ctl.table import format_table
from mnp.offline import dump

OUTPUTS = ("table", "wide", "yaml", "json", "name")


def _shown(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as kubectl shows it: apiVersion and kind first, managedFields left out."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {"apiVersion": kind.api_version, "kind": kind.kind, **obj, "metadata": meta}


def _scope(kind: Kind, namespace: str | None, all_namespaces: bool) -> str | None:
    if not kind.namespaced:
        return None
    return None if all_namespaces else (namespace or DEFAULT_NAMESPACE)


async def get_objects(
    api: ClusterApi,
    kind_name: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print what `mnp local get` prints; 1 with a message for an unknown kind or a missing object."""
    try:
        kind = await api.find_kind(kind_name)
    except UnknownKind:
        print(
            f"error: the server has no resource type {kind_name!r}; "
            f"`kubectl --kubeconfig $(mnp local kubeconfig) api-resources` lists them",
            file=err,
        )
        return 1
    scope = _scope(kind, namespace, all_namespaces and name is None)
    where = f" in namespace {scope}" if scope else ""
    try:
        if output in ("table", "wide"):
            table = await api.table(kind, scope, name)
            text = format_table(
                table, wide=output == "wide", with_namespace=kind.namespaced and scope is None
            )
            if not text:
                print(f"No resources found{where}.", file=err)
            out.write(text)
            return 0
        if name is not None:
            objects = [_shown(kind, await api.get(kind, scope or "", name))]
        else:
            objects = [_shown(kind, o) for o in await api.list(kind, scope)]
    except NotFound:
        print(f"error: {kind.display} {name!r} not found{where}", file=err)
        return 1
    if output == "name":
        out.write("".join(f"{kind.display}/{o['metadata']['name']}\n" for o in objects))
    elif name is not None:
        out.write(dump(objects[0], output))
    else:
        out.write(dump({"apiVersion": "v1", "kind": "List", "items": objects}, output))
    return 0


__all__ = ["OUTPUTS", "get_objects"]
