"""Label and field selectors in their query-string forms (`?labelSelector=`, `?fieldSelector=`).

Parsed once per request into matchers that a list or a watch applies to every object; a bad selector
is a 400 with the real server's wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnp.local.apiserver.errors import StatusError

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_TERM = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)\s*$")
_SET = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str]

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=", "notin"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str] | None) -> bool:
        got = labels or {}
        return all(r.matches(got) for r in self.requirements)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h,!i`; raise 400 on anything else."""
    if not text or not text.strip():
        return LabelSelector(())
    reqs: list[Requirement] = []
    for raw in _split_top(text):
        term = raw.strip()
        m = _SET.match(term)
        if m:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            reqs.append(_req(m["key"], m["op"], values, text))
            continue
        m = _TERM.match(term)
        if m:
            op = "!=" if m["op"] == "!=" else "="
            reqs.append(_req(m["key"], op, frozenset({m["value"]}), text))
            continue
        if term.startswith("!"):
            reqs.append(_req(term[1:].strip(), "!", frozenset(), text))
            continue
        reqs.append(_req(term, "exists", frozenset(), text))
    return LabelSelector(tuple(reqs))


def _req(key: str, op: str, values: frozenset[str], text: str) -> Requirement:
    if not _KEY.match(key) or len(key) > 317:
        raise StatusError(400, f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return Requirement(key, op, values)


# Field selectors: which fields each resource supports, as getters on the raw object.
Getter = Callable[[dict[str, Any]], str]


def _path(*keys: str) -> Getter:
    def get(obj: dict[str, Any]) -> str:
        cur: Any = obj
        for k in keys:
            cur = cur.get(k) if isinstance(cur, dict) else None
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


def field_path(dotted: str) -> Getter:
    """A getter for a CRD selectableField such as `spec.node`."""
    return _path(*dotted.split("."))


COMMON_FIELDS: dict[str, Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
POD_FIELDS: dict[str, Getter] = {
    "spec.nodeName": _path("spec", "nodeName"),
    "status.phase": _path("status", "phase"),
    "status.podIP": _path("status", "podIP"),
    "spec.restartPolicy": _path("spec", "restartPolicy"),
    "spec.schedulerName": _path("spec", "schedulerName"),
    "spec.serviceAccountName": _path("spec", "serviceAccountName"),
    "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
    "status.nominatedNodeName": _path("status", "nominatedNodeName"),
}
EVENT_FIELDS: dict[str, Getter] = {
    **{
        f"involvedObject.{k}": _path("involvedObject", k)
        for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": _path("reason"),
    "type": _path("type"),
    "source": _path("source", "component"),
    "reportingComponent": _path("reportingComponent"),
}
# events.k8s.io/v1 names for the same (core-stored) fields.
NEW_EVENT_FIELDS: dict[str, Getter] = {
    **{
        f"regarding.{k}": _path("involvedObject", k)
        for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": _path("reason"),
    "type": _path("type"),
    "reportingController": _path("reportingComponent"),
}
NAMESPACE_FIELDS: dict[str, Getter] = {"status.phase": _path("status", "phase")}
NODE_FIELDS: dict[str, Getter] = {
    "spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false"
}
SECRET_FIELDS: dict[str, Getter] = {"type": _path("type")}


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[Getter, bool, str, str], ...]  # getter, equal?, value, field name

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((get(obj) == value) == equal for get, equal, value, _ in self.terms)

    def name(self) -> str | None:
        """The single metadata.name this selector pins, if any (a watch on one object)."""
        for _, equal, value, field in self.terms:
            if field == "metadata.name" and equal:
                return value
        return None


def parse_field_selector(text: str | None, fields: dict[str, Getter]) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector(())
    terms: list[tuple[Getter, bool, str, str]] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", term)
        if not m:
            raise StatusError(400, f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = m[1].strip(), m[2], m[3].strip()
        getter = fields.get(field)
        if getter is None:
            raise StatusError(400, f"field label not supported: {field}")
        terms.append((getter, op != "!=", value, field))
    return FieldSelector(tuple(terms))
