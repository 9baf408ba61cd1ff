"""Decoding of the few protobuf request bodies kubectl sends through typed clients.

`kubectl create namespace|configmap|secret|serviceaccount|token|role|clusterrole|rolebinding|
clusterrolebinding` and `kubectl auth can-i|whoami` POST
`application/vnd.kubernetes.protobuf` and do not fall back to JSON on 415. Answers are always JSON
(the Accept header allows it); only these kinds' request bodies are understood, the rest get 415.
"""

from __future__ import annotations

import base64
from typing import Any

from mnp.local.apiserver.errors import StatusError

MAGIC = b"k8s\x00"
# A schema maps field number → (json name, kind, repeated); kind is a scalar name or a nested schema.
Schema = dict[int, tuple[str, Any, bool]]

TIME: Schema = {1: ("seconds", "int", False), 2: ("nanos", "int", False)}
OWNER_REF: Schema = {
    1: ("kind", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("controller", "bool", False),
    7: ("blockOwnerDeletion", "bool", False),
}
OBJECT_META: Schema = {
    1: ("name", "string", False),
    2: ("generateName", "string", False),
    3: ("namespace", "string", False),
    5: ("uid", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("generation", "int", False),
    11: ("labels", "map", True),
    12: ("annotations", "map", True),
    13: ("ownerReferences", OWNER_REF, True),
    14: ("finalizers", "string", True),
}
RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string", False),
    2: ("verb", "string", False),
    3: ("group", "string", False),
    4: ("version", "string", False),
    5: ("resource", "string", False),
    6: ("subresource", "string", False),
    7: ("name", "string", False),
}
NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", "string", False), 2: ("verb", "string", False)}
POLICY_RULE: Schema = {
    1: ("verbs", "string", True),
    2: ("apiGroups", "string", True),
    3: ("resources", "string", True),
    4: ("resourceNames", "string", True),
    5: ("nonResourceURLs", "string", True),
}
LABEL_SELECTOR: Schema = {
    1: ("matchLabels", "map", True),
    2: (
        "matchExpressions",
        {1: ("key", "string", False), 2: ("operator", "string", False), 3: ("values", "string", True)},
        True,
    ),
}
SUBJECT: Schema = {
    1: ("kind", "string", False),
    2: ("apiGroup", "string", False),
    3: ("name", "string", False),
    4: ("namespace", "string", False),
}
ROLE_REF: Schema = {
    1: ("apiGroup", "string", False),
    2: ("kind", "string", False),
    3: ("name", "string", False),
}
BINDING: Schema = {
    1: ("metadata", OBJECT_META, False),
    2: ("subjects", SUBJECT, True),
    3: ("roleRef", ROLE_REF, False),
}
CONTAINER: Schema = {
    1: ("name", "string", False),
    2: ("image", "string", False),
    3: ("command", "string", True),
    4: ("args", "string", True),
    5: ("workingDir", "string", False),
    6: (
        "ports",
        {
            1: ("name", "string", False),
            2: ("hostPort", "int", False),
            3: ("containerPort", "int", False),
            4: ("protocol", "string", False),
            5: ("hostIP", "string", False),
        },
        True,
    ),
    7: ("env", {1: ("name", "string", False), 2: ("value", "string", False)}, True),
    8: ("resources", {}, False),
    14: ("imagePullPolicy", "string", False),
}
POD_SPEC: Schema = {
    2: ("containers", CONTAINER, True),
    3: ("restartPolicy", "string", False),
    4: ("terminationGracePeriodSeconds", "int", False),
    6: ("dnsPolicy", "string", False),
    7: ("nodeSelector", "map", True),
    8: ("serviceAccountName", "string", False),
    10: ("nodeName", "string", False),
    11: ("hostNetwork", "bool", False),
}
POD_TEMPLATE: Schema = {1: ("metadata", OBJECT_META, False), 2: ("spec", POD_SPEC, False)}
DEPLOYMENT_SPEC: Schema = {
    1: ("replicas", "int", False),
    2: ("selector", {1: ("matchLabels", "map", True)}, False),
    3: ("template", POD_TEMPLATE, False),
    4: ("strategy", {1: ("type", "string", False)}, False),
    5: ("minReadySeconds", "int", False),
}
KINDS: dict[str, Schema] = {
    "Deployment": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", DEPLOYMENT_SPEC, False),
        3: ("status", {}, False),
    },
    "Role": {1: ("metadata", OBJECT_META, False), 2: ("rules", POLICY_RULE, True)},
    "ClusterRole": {
        1: ("metadata", OBJECT_META, False),
        2: ("rules", POLICY_RULE, True),
        3: ("aggregationRule", {1: ("clusterRoleSelectors", LABEL_SELECTOR, True)}, False),
    },
    "RoleBinding": BINDING,
    "ClusterRoleBinding": BINDING,
    "Namespace": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("finalizers", "string", True)}, False),
    },
    "ConfigMap": {
        1: ("metadata", OBJECT_META, False),
        2: ("data", "map", True),
        3: ("binaryData", "bytesmap", True),
        4: ("immutable", "bool", False),
    },
    "Secret": {
        1: ("metadata", OBJECT_META, False),
        2: ("data", "bytesmap", True),
        3: ("type", "string", False),
        4: ("stringData", "map", True),
        5: ("immutable", "bool", False),
    },
    "ServiceAccount": {
        1: ("metadata", OBJECT_META, False),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("resourceAttributes", RESOURCE_ATTRIBUTES, False),
                2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES, False),
            },
            False,
        ),
    },
    "SelfSubjectRulesReview": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("namespace", "string", False)}, False),
    },
    "SelfSubjectReview": {1: ("metadata", OBJECT_META, False)},
    "TokenRequest": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("audiences", "string", True), 4: ("expirationSeconds", "int", False)}, False),
    },
}
UNKNOWN: Schema = {
    1: ("typeMeta", {1: ("apiVersion", "string", False), 2: ("kind", "string", False)}, False),
    2: ("raw", "bytes", False),
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out = []
    pos = 0
    value: Any
    while pos < len(data):
        key, pos = _varint(data, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _decode(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _wire, raw in _fields(data):
        if num not in schema:
            continue
        name, kind, repeated = schema[num]
        if kind in ("map", "bytesmap"):
            entry = {n: v for n, _, v in _fields(raw)}
            key = entry.get(1, b"").decode()
            val = entry.get(2, b"")
            obj.setdefault(name, {})[key] = (
                base64.b64encode(val).decode() if kind == "bytesmap" else val.decode()
            )
            continue
        if kind == "string":
            value: Any = raw.decode()
        elif kind == "bytes":
            value = raw
        elif kind == "int":
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif kind == "bool":
            value = bool(raw)
        else:
            value = _decode(raw, kind)
        if repeated:
            obj.setdefault(name, []).append(value)
        elif value not in ("", 0, False) or isinstance(value, dict):
            obj[name] = value  # zero scalars left out, as Go's `omitempty` JSON would
    return obj


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a Kubernetes protobuf envelope; 415 for kinds not understood."""
    if not body.startswith(MAGIC):
        raise StatusError(400, "protobuf body lacks the k8s envelope")
    try:
        unknown = _decode(body[len(MAGIC) :], UNKNOWN)
        meta = unknown.get("typeMeta") or {}
        kind = meta.get("kind", "")
        schema = KINDS.get(kind)
        if schema is None:
            raise StatusError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/yaml (protobuf {kind})",
                "UnsupportedMediaType",
            )
        obj = _decode(unknown.get("raw", b""), schema)
    except (ValueError, UnicodeDecodeError) as e:
        raise StatusError(400, f"the protobuf body could not be decoded: {e}") from None
    obj["apiVersion"], obj["kind"] = meta.get("apiVersion", ""), kind
    return obj
