"""What the server does to an object before storing it: names, server-set metadata, per-kind
defaults and status rules, and structural-schema validation of custom resources.

Pure functions of (type, old, new, clock); the store calls them inside its write lock.
"""

from __future__ import annotations

import datetime
import re
import secrets
import uuid
from typing import Any

from mnp.local.apiserver import builtin_fields
from mnp.local.apiserver import schema as structural
from mnp.local.apiserver.catalog import ResourceType
from mnp.local.apiserver.errors import StatusError, invalid
from mnp.local.apiserver.values import json_copy, json_copy_sharing_strings

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PATH_SEGMENT_BAD = re.compile(r"[/%]")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose name is a DNS label; RBAC objects and CRDs only need a path segment / subdomain.
_LABEL_NAMED = frozenset({"namespaces", "serviceaccounts"})
_PATH_NAMED = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the real server's: no vowels, no confusable digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


def check_name(t: ResourceType, name: str, ns: str) -> None:
    causes: list[tuple[str, str]] = []
    if not name:
        raise invalid(
            t.kind, t.group, "", [("metadata.name", "Required value: name or generateName is required")]
        )
    if t.plural in _PATH_NAMED:
        if name in (".", "..") or _PATH_SEGMENT_BAD.search(name):
            causes.append(("metadata.name", f"Invalid value: \"{name}\": may not contain '/' or '%'"))
    elif t.plural in _LABEL_NAMED:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must '
                    "consist of lower case alphanumeric characters or '-', and must "
                    "start and end with an alphanumeric character",
                )
            )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                "consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character",
            )
        )
    if causes:
        raise invalid(t.kind, t.group, name, causes)


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_ANNOTATIONS_LIMIT = 256 * 1024


def _qualified_name_problem(key: Any) -> str | None:
    """Why a label or annotation key is not a qualified name ([prefix/]name), or None."""
    if not isinstance(key, str) or not key:
        return "name part must be non-empty"
    parts = key.split("/")
    if len(parts) > 2:
        return (
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
            "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
            "prefix and '/' (e.g. 'example.com/MyName')"
        )
    name = parts[-1]
    if len(parts) == 2 and (not parts[0] or len(parts[0]) > 253 or not _DNS_SUBDOMAIN.match(parts[0])):
        return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return _NAME_RULE
    return None


def check_metadata(t: ResourceType, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    causes: list[tuple[str, str]] = []
    for key, value in (meta.get("labels") or {}).items():
        problem = _qualified_name_problem(key)
        if problem:
            causes.append(("metadata.labels", f'Invalid value: "{key}": {problem}'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(("metadata.labels", f'Invalid value: "{value}": {_LABEL_VALUE_RULE}'))
    annotations = meta.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        problem = _qualified_name_problem(key)
        if problem:
            causes.append(("metadata.annotations", f'Invalid value: "{key}": {problem}'))
        if not isinstance(value, str):
            causes.append((f"metadata.annotations.{key}", "Invalid value: must be a string"))
        else:
            size += len(str(key)) + len(value)
    if size > _ANNOTATIONS_LIMIT:
        causes.append(("metadata.annotations", f"Too long: may not be more than {_ANNOTATIONS_LIMIT} bytes"))
    if causes:
        raise invalid(t.kind, t.group, meta.get("name", ""), causes)


def new_metadata(obj: dict[str, Any], t: ResourceType, ns: str, now: datetime.datetime) -> None:
    """Server-set metadata of a created object (uid, creationTimestamp, generation, namespace)."""
    meta = obj.setdefault("metadata", {})
    for server_set in (
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "generation",
        "selfLink",
    ):
        meta.pop(server_set, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp(now)
    meta["generation"] = 1
    if t.namespaced:
        meta["namespace"] = ns
    else:
        meta.pop("namespace", None)
    obj["apiVersion"], obj["kind"] = t.storage_api_version


def reset_status_on_create(t: ResourceType, obj: dict[str, Any]) -> None:
    """Status a created object starts with, as each kind's create strategy sets it."""
    if t.plural == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif t.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
    elif t.plural in ("deployments", "daemonsets"):
        obj["status"] = {}
    elif t.status and not t.builtin:
        obj.pop("status", None)


def default_pod(obj: dict[str, Any]) -> None:
    """The defaults the real server fills into a pod spec (on create and on every update)."""
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if isinstance(c, dict):
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("imagePullPolicy", "IfNotPresent")
                for p in c.get("ports") or []:
                    if isinstance(p, dict):
                        p.setdefault("protocol", "TCP")


def validate_pod(obj: dict[str, Any]) -> None:
    spec = obj.get("spec") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    causes: list[tuple[str, str]] = []
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not containers or not isinstance(containers, list):
        causes.append(("spec.containers", "Required value"))
    else:
        for n, c in enumerate(containers):
            if not isinstance(c, dict) or not c.get("name"):
                causes.append((f"spec.containers[{n}].name", "Required value"))
            elif not c.get("image"):
                causes.append((f"spec.containers[{n}].image", "Required value"))
    if causes:
        raise invalid("Pod", "", name, causes)


_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
_POD_UPDATE_RULE = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
    "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
    "previously negative)"
)


def check_pod_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse changes to immutable pod spec fields, as the real server does (422 on `spec`)."""

    def comparable(obj: dict[str, Any]) -> Any:
        spec = json_copy(obj.get("spec") or {})
        if not isinstance(spec, dict):
            return spec
        for key in _POD_MUTABLE:
            spec.pop(key, None)
        for field in ("containers", "initContainers"):
            for c in spec.get(field) or []:
                if isinstance(c, dict):
                    c.pop("image", None)
        return spec

    if comparable(old) != comparable(new):
        raise invalid("Pod", "", (new.get("metadata") or {}).get("name", ""), [("spec", _POD_UPDATE_RULE)])


def spec_part(t: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """Everything whose change bumps metadata.generation (not metadata; not status if a subresource)."""
    skip = {"metadata", "status"} if t.status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip and k not in ("apiVersion", "kind")}


def validate_custom(
    t: ResourceType, obj: dict[str, Any], validation: str, validated: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Prune and validate an object the caller gives up; returns it with the warnings for
    `fieldValidation=Warn`. `validated`: the stored object, when this schema validated it (ratcheting)."""
    if t.builtin:
        unknown = builtin_fields.prune_unknown(t.plural, obj)
        if unknown and validation == "Strict":
            raise StatusError(
                400, "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
            )
        return obj, [f'unknown field "{u}"' for u in unknown] if validation in ("Warn", "") else []
    if not t.schema:
        return obj, []
    name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName", "")
    pruned, found = structural.check(t.schema, obj, validated)
    if found.unknown and validation == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in found.unknown)
        raise StatusError(400, f"strict decoding error: {listed}")
    if found.errors:
        raise invalid(t.kind, t.group, name, found.errors)
    warnings = [f'unknown field "{u}"' for u in found.unknown] if validation in ("Warn", "") else []
    return pruned, warnings


def copy_server_metadata(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Metadata clients cannot change through an update."""
    om, nm = old.get("metadata") or {}, new.setdefault("metadata", {})
    for key in (
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ):
        if key in om:
            nm[key] = json_copy_sharing_strings(om[key])
        else:
            nm.pop(key, None)
    nm.pop("selfLink", None)
    if "managedFields" not in nm and "managedFields" in om:
        nm["managedFields"] = json_copy_sharing_strings(om["managedFields"])


# Built-in Time fields (RFC 3339, whole seconds) and MicroTime fields (six fractional digits); the real
# server decodes them into Go types, so "+00:00" offsets and other precisions come back normalised.
_TIME_FIELDS = frozenset(
    {
        "creationTimestamp",
        "deletionTimestamp",
        "time",
        "firstTimestamp",
        "lastTimestamp",
        "lastProbeTime",
        "lastTransitionTime",
        "startTime",
        "startedAt",
        "finishedAt",
        "lastHeartbeatTime",
        "lastUpdateTime",
        "lastScaleTime",
    }
)
_MICRO_FIELDS = frozenset({"acquireTime", "renewTime", "eventTime", "lastObservedTime"})


def normalize_times(value: Any) -> Any:
    """Rewrite the Time and MicroTime fields of a built-in object in their canonical text form."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, str) and (key in _TIME_FIELDS or key in _MICRO_FIELDS):
                parsed = parse_time(sub)
                if parsed is not None:
                    if parsed.tzinfo is None:
                        parsed = parsed.replace(tzinfo=datetime.UTC)
                    parsed = parsed.astimezone(datetime.UTC)
                    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if key in _MICRO_FIELDS else "%Y-%m-%dT%H:%M:%SZ"
                    value[key] = parsed.strftime(fmt)
            else:
                normalize_times(sub)
    elif isinstance(value, list):
        for item in value:
            normalize_times(item)
    return value
