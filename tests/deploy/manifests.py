"""deploy/ and crds/ as the tests read them: the documents of each file, kustomize's rendering, and the
workloads' containers; plus a strict check of an object against the `kubernetes` client's models."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRDS = REPO / "crds"
KUBECTL = Path(sys.executable).parent / "kubectl"

_LIST = re.compile(r"^List\[(.*)\]$")
_DICT = re.compile(r"^Dict\[str, (.*)\]$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}
# Fields the client types as `object` that hold a schema inside a CRD (apiextensions v1 JSONSchemaProps).
_SCHEMA_OBJECTS = {"items", "additional_properties", "additional_items"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def deploy_files() -> list[Path]:
    """The files `kubectl apply -f deploy/` reads, in the order it applies them."""
    return sorted(p for p in DEPLOY.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def kustomize() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/` with the pinned kubectl, fresh objects on each call."""
    return [d for d in yaml.safe_load_all(_kustomize_output()) if d]


@functools.cache
def _kustomize_output() -> str:
    proc = subprocess.run(
        [str(KUBECTL), "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: found {len(found)}"
    return found[0]


def model_name(obj: dict[str, Any]) -> str:
    """The client's model class of an object: apps/v1 DaemonSet → V1DaemonSet."""
    version = str(obj["apiVersion"]).rpartition("/")[2]
    return version[0].upper() + version[1:] + str(obj["kind"])


def unknown_fields(value: Any, model: str, path: str = "") -> list[str]:
    """Every field of `value` that model `model` does not have, or whose JSON type is wrong, as a path.

    Stricter than `ApiClient.deserialize`, which drops unknown keys silently (a typo such as
    `mountPropogation` would vanish on the way to the API server, or be refused by it).
    """
    if value is None or model == "object":
        return []
    if m := _LIST.match(model):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, v in enumerate(value) for p in unknown_fields(v, m.group(1), f"{path}[{i}]")]
    if m := _DICT.match(model):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [p for k, v in value.items() for p in unknown_fields(v, m.group(1), f"{path}.{k}")]
    if model in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[model]) and not (model != "bool" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {model}, got {value!r}"]
    if model == "datetime":
        return [] if isinstance(value, str) else [f"{path}: expected a timestamp"]
    cls = getattr(client, model)
    if not isinstance(value, dict):
        return [f"{path}: expected a {model} object"]
    keys = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    problems: list[str] = []
    for key, v in value.items():
        here = f"{path}.{key}" if path else key
        if key not in keys:
            problems.append(f"{here}: not a field of {model}")
            continue
        attr = keys[key]
        sub = cls.openapi_types[attr]
        if model == "V1JSONSchemaProps" and attr in _SCHEMA_OBJECTS and isinstance(v, dict):
            sub = "V1JSONSchemaProps"
        problems.extend(unknown_fields(v, sub, here))
    return problems


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])
