"""What applying policy files would change (pure): live objects + files → unified diffs of rulesets.

The files' MultiNetworkPolicies and NetworkAttachmentDefinitions replace the live objects of the same
namespace/name (or are added); the result is compiled and planned by the controller's own functions
(`compile_rulesets`, `desired_rulesets`, `plan_writes`), so a diff shows exactly the writes the
controller would make. Each side is printed as canonical YAML of what the controller manages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from mnp.api.cluster import parse_namespace, parse_network, parse_pod
from mnp.api.policy import parse_policy
from mnp.api.refs import Diagnostic
from mnp.compiler.compile import CompileOptions, Snapshot, compile_rulesets
from mnp.controller.plan import Action, Key, desired_rulesets, plan_writes
from mnp.offline import Document, ManifestError

# Kinds a file may hold: the compiler inputs that a GitOps repository owns. Pods are not (Multus
# writes their network-status), nor Namespaces (the API server and others add labels to them).
APPLIABLE = {"MultiNetworkPolicy": "policies", "NetworkAttachmentDefinition": "networks"}
NO_FILE = "/dev/null"


@dataclass(frozen=True, slots=True)
class Live:
    """The raw objects read from the cluster, as lists of Kubernetes JSON objects."""

    pods: Sequence[Mapping[str, Any]] = ()
    namespaces: Sequence[Mapping[str, Any]] = ()
    networks: Sequence[Mapping[str, Any]] = ()
    policies: Sequence[Mapping[str, Any]] = ()
    rulesets: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Diff:
    text: str  # the unified diffs, in ruleset order; "" when applying changes nothing
    warnings: tuple[str, ...]  # `ns/name: field: message`, led by file#doc for objects from the files

    @property
    def changed(self) -> bool:
        return bool(self.text)


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def overlay(
    live: Live, docs: Iterable[Document], namespace: str | None = None
) -> tuple[Live, dict[tuple[str, str, str], str]]:
    """`live` with the documents in place of the objects they name, and (kind, ns, name) → file#doc.

    A document's namespace is its own, else `namespace` (-n), else `default`, as kubectl apply does.
    Raises ManifestError for another kind, a nameless document, a duplicate or a namespace conflict.
    """
    replaced: dict[str, dict[Key, Mapping[str, Any]]] = {
        field: {_key(o): o for o in getattr(live, field)} for field in APPLIABLE.values()
    }
    sources: dict[tuple[str, str, str], str] = {}
    for doc in docs:
        kind = doc.obj["kind"]
        if kind not in APPLIABLE:
            raise ManifestError(
                "kind", f"{kind} cannot be diffed (only {' and '.join(sorted(APPLIABLE))})", doc.source
            )
        meta = doc.obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise ManifestError("metadata.name", f"{kind} has no name", doc.source)
        own = meta.get("namespace")
        if own and namespace and own != namespace:
            raise ManifestError(
                "metadata.namespace", f"{own!r} does not match --namespace {namespace!r}", doc.source
            )
        ns = str(own or namespace or "default")
        where = (kind, ns, meta["name"])
        if where in sources:
            raise ManifestError("", f"{kind} {ns}/{meta['name']} is also in {sources[where]}", doc.source)
        sources[where] = doc.source
        obj = {**doc.obj, "metadata": {**meta, "namespace": ns}}
        replaced[APPLIABLE[kind]][(ns, meta["name"])] = obj
    merged = Live(
        live.pods,
        live.namespaces,
        tuple(replaced["networks"][k] for k in sorted(replaced["networks"])),
        tuple(replaced["policies"][k] for k in sorted(replaced["policies"])),
        live.rulesets,
    )
    return merged, sources


def snapshot_of(live: Live) -> Snapshot:
    """The compiler's input from raw objects, parsed and ordered as the controller's `Parsed` does."""
    return Snapshot(
        tuple(parse_policy(o)[0] for o in sorted(live.policies, key=_key)),
        tuple(parse_pod(o)[0] for o in sorted(live.pods, key=_key)),
        tuple(parse_namespace(o) for o in sorted(live.namespaces, key=_key)),
        tuple(parse_network(o) for o in sorted(live.networks, key=_key)),
    )


def managed_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ruleset the controller manages: no status, owners or server bookkeeping."""
    meta = obj.get("metadata") or {}
    view_meta = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("labels"):
        view_meta["labels"] = dict(meta["labels"])
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": view_meta,
        "spec": obj.get("spec"),
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def canonical_yaml(obj: Mapping[str, Any]) -> str:
    """Keys sorted at every level: the live side comes back in the API server's key order."""
    view = managed_view(obj)
    return yaml.dump(view, Dumper=_NoAliases, sort_keys=True, default_flow_style=False, width=120)


def unified(key: Key, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """One ruleset's diff, `live/ns/name` against `applied/ns/name` (/dev/null for a side absent)."""
    name = f"{key[0]}/{key[1]}"
    old = canonical_yaml(before).splitlines(keepends=True) if before is not None else []
    new = canonical_yaml(after).splitlines(keepends=True) if after is not None else []
    return "".join(
        difflib.unified_diff(
            old,
            new,
            f"live/{name}" if before is not None else NO_FILE,
            f"applied/{name}" if after is not None else NO_FILE,
        )
    )


def _warning(d: Diagnostic, sources: Mapping[tuple[str, str, str], str]) -> str:
    where = sources.get((d.obj.kind, d.obj.namespace, d.obj.name), "")
    return f"{where + ': ' if where else ''}{d}"


def diff_rulesets(
    live: Live, docs: Iterable[Document], options: CompileOptions, namespace: str | None = None
) -> Diff:
    """The rulesets the controller would create, update or delete once `docs` are applied to `live`.

    Deterministic: diffs in (namespace, name) order. A ruleset whose only difference is one the view
    leaves out (its owner reference) prints nothing.
    """
    applied, sources = overlay(live, docs, namespace)
    snapshot = snapshot_of(applied)
    result = compile_rulesets(snapshot, options)
    existing = {_key(r): r for r in live.rulesets}
    parts = []
    for write in plan_writes(desired_rulesets(result.rulesets, snapshot.pods), existing):
        after = write.body if write.action is not Action.DELETE else None
        parts.append(unified(write.key, existing.get(write.key), after))
    return Diff("".join(parts), tuple(_warning(d, sources) for d in result.diagnostics))


__all__ = ["APPLIABLE", "Diff", "Live", "canonical_yaml", "diff_rulesets", "managed_view", "overlay"]
