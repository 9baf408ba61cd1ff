"""Known fields of built-in kinds, for `fieldValidation` (Strict: 400, Warn: a warning, Ignore: drop).

The real server decodes built-ins into Go structs, so an unknown field is refused under Strict, the
way kubectl apply always asks. Checked here: every kind's top level and metadata, and the pod spec
and container levels (also inside Deployment and DaemonSet templates) where typos happen; deeper
structs (probes, security contexts, volumes) are not checked.
"""

from __future__ import annotations

from typing import Any

OBJECT_META = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_COMMON = frozenset({"apiVersion", "kind", "metadata"})
TOP_LEVEL: dict[str, frozenset[str]] = {
    "pods": _COMMON | {"spec", "status"},
    "namespaces": _COMMON | {"spec", "status"},
    "nodes": _COMMON | {"spec", "status"},
    "configmaps": _COMMON | {"data", "binaryData", "immutable"},
    "secrets": _COMMON | {"data", "stringData", "type", "immutable"},
    "serviceaccounts": _COMMON | {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "leases": _COMMON | {"spec"},
    "services": _COMMON | {"spec", "status"},
    "deployments": _COMMON | {"spec", "status"},
    "daemonsets": _COMMON | {"spec", "status"},
    "roles": _COMMON | {"rules"},
    "clusterroles": _COMMON | {"rules", "aggregationRule"},
    "rolebindings": _COMMON | {"subjects", "roleRef"},
    "clusterrolebindings": _COMMON | {"subjects", "roleRef"},
    "customresourcedefinitions": _COMMON | {"spec", "status"},
}
POD_SPEC = frozenset(
    {
        "volumes",
        "initContainers",
        "containers",
        "ephemeralContainers",
        "restartPolicy",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "dnsPolicy",
        "nodeSelector",
        "serviceAccountName",
        "serviceAccount",
        "automountServiceAccountToken",
        "nodeName",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "shareProcessNamespace",
        "securityContext",
        "imagePullSecrets",
        "hostname",
        "subdomain",
        "affinity",
        "schedulerName",
        "tolerations",
        "hostAliases",
        "priorityClassName",
        "priority",
        "dnsConfig",
        "readinessGates",
        "runtimeClassName",
        "enableServiceLinks",
        "preemptionPolicy",
        "overhead",
        "topologySpreadConstraints",
        "setHostnameAsFQDN",
        "os",
        "hostUsers",
        "schedulingGates",
        "hostnameOverride",
        "resourceClaims",
        "resources",
    }
)
CONTAINER = frozenset(
    {
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
        "targetContainerName",
    }
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _check(obj: dict[str, Any], known: frozenset[str], path: str, unknown: list[str]) -> None:
    for key in list(obj):
        if key not in known:
            unknown.append(f"{path}.{key}" if path else key)
            del obj[key]


def _pod_spec(spec: Any, path: str, unknown: list[str]) -> None:
    if not isinstance(spec, dict):
        return
    _check(spec, POD_SPEC, path, unknown)
    for field in _CONTAINER_LISTS:
        for n, c in enumerate(spec.get(field) or []):
            if isinstance(c, dict):
                _check(c, CONTAINER, f"{path}.{field}[{n}]", unknown)


def prune_unknown(plural: str, obj: dict[str, Any]) -> list[str]:
    """Drop the unknown fields of a built-in object in place; returns their paths."""
    unknown: list[str] = []
    known = TOP_LEVEL.get(plural)
    if known is None:
        return unknown
    _check(obj, known, "", unknown)
    if isinstance(obj.get("metadata"), dict):
        _check(obj["metadata"], OBJECT_META, "metadata", unknown)
    spec = obj.get("spec")
    if plural == "pods":
        _pod_spec(spec, "spec", unknown)
    elif plural in ("deployments", "daemonsets") and isinstance(spec, dict):
        template = spec.get("template")
        if isinstance(template, dict):
            _pod_spec(template.get("spec"), "spec.template.spec", unknown)
    return unknown
