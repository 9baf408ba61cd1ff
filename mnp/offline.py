"""Reading manifests from files for `mnp compile` and `mnp render`: the I/O shell around the core.

Every document keeps its source (`file#N`, counting documents from 1) so that each problem can be
reported on one line naming file, document, object and field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mnp.api.cluster import parse_namespace, parse_network, parse_pod
from mnp.api.errors import InvalidInput
from mnp.api.policy import parse_policy
from mnp.api.refs import Diagnostic, ObjRef
from mnp.compiler.compile import Snapshot

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(InvalidInput):
    """A file that cannot be read or a document that is not a Kubernetes object."""


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    obj: Mapping[str, Any]


def _files(paths: Iterable[str]) -> Iterator[tuple[str, str]]:
    for p in paths:
        if p == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
        else:
            files = [path]
        for f in files:
            try:
                yield str(f), f.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise ManifestError(
                    "", f"cannot read: {e.strerror if isinstance(e, OSError) else e}", str(f)
                ) from None


def load_documents(paths: Iterable[str]) -> list[Document]:
    """Every object in the files, `List`s expanded; raises ManifestError on unreadable input."""
    docs: list[Document] = []
    for name, text in _files(paths):
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            raise ManifestError("", f"{where}not valid YAML/JSON: {getattr(e, 'problem', e)}", name) from None
        for i, obj in enumerate(loaded, start=1):
            if obj is None:
                continue
            source = f"{name}#{i}"
            if not isinstance(obj, Mapping) or not isinstance(obj.get("kind"), str):
                raise ManifestError("", "not a Kubernetes object (no kind)", source)
            if obj["kind"].endswith("List") and isinstance(obj.get("items"), list):
                for j, item in enumerate(obj["items"]):
                    if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
                        raise ManifestError(f"items[{j}]", "not a Kubernetes object (no kind)", source)
                    docs.append(Document(f"{source}.items[{j}]", item))
            else:
                docs.append(Document(source, obj))
    return docs


@dataclass(frozen=True, slots=True)
class Loaded:
    snapshot: Snapshot
    sources: Mapping[tuple[str, str, str], str]  # (kind, namespace, name) → file#doc

    def where(self, d: Diagnostic) -> str:
        return self.sources.get((d.obj.kind, d.obj.namespace, d.obj.name), "")


_KINDS = {"MultiNetworkPolicy", "Pod", "Namespace", "NetworkAttachmentDefinition"}


def build_snapshot(docs: Iterable[Document]) -> Loaded:
    """The compiler's input from manifests; other kinds are ignored. Raises ManifestError."""
    policies, pods, namespaces, networks = [], [], [], []
    sources: dict[tuple[str, str, str], str] = {}
    for doc in docs:
        kind = doc.obj["kind"]
        if kind not in _KINDS:
            continue
        meta = doc.obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise ManifestError("metadata.name", f"{kind} has no name", doc.source)
        namespace = "" if kind == "Namespace" else str(meta.get("namespace") or "default")
        key = (kind, namespace, meta["name"])
        if key in sources:
            raise ManifestError(
                "", f"{kind} {ObjRef(namespace, meta['name'])} is also in {sources[key]}", doc.source
            )
        sources[key] = doc.source
        if kind == "MultiNetworkPolicy":
            policies.append(parse_policy(doc.obj)[0])  # problems travel with the policy
        elif kind == "Pod":
            pods.append(parse_pod(doc.obj)[0])
        elif kind == "Namespace":
            namespaces.append(parse_namespace(doc.obj))
        else:
            networks.append(parse_network(doc.obj))
    snapshot = Snapshot(tuple(policies), tuple(pods), tuple(namespaces), tuple(networks))
    return Loaded(snapshot, sources)


def dump(obj: Any, output: str) -> str:
    """Stable text for GitOps diffs: key order as built, no aliases, JSON indented."""
    if output == "json":
        return json.dumps(obj, indent=2) + "\n"

    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(obj, Dumper=_NoAliases, sort_keys=False, default_flow_style=False, width=120)
