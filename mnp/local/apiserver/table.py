"""Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` answers.

Custom resources print the CRD's additionalPrinterColumns (JSONPath subset, ages for `date`);
built-in kinds print the columns kubectl users know (pods: Ready, Status, Restarts, Age, ...).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

from mnp.local.apiserver.admission import parse_time
from mnp.local.apiserver.catalog import ResourceType

Column = dict[str, Any]
Cell = Callable[[dict[str, Any], datetime.datetime], Any]

_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_$-]+)|\[(?P<index>-?\d+|\*)\]|\['(?P<quoted>[^']*)'\]"""
    r"""|\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_-]+)+)\s*(?P<fop>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]"""
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset CRD printer columns use; unknown syntax yields no result."""
    expr = path.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    expr = expr.lstrip("$")
    results = [obj]
    pos = 0
    while pos < len(expr):
        m = _SEGMENT.match(expr, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for cur in results:
            name = m["name"] or m["quoted"]
            if name is not None:
                if isinstance(cur, dict) and name in cur:
                    nxt.append(cur[name])
            elif m["index"] is not None:
                if isinstance(cur, list):
                    if m["index"] == "*":
                        nxt.extend(cur)
                    elif -len(cur) <= int(m["index"]) < len(cur):
                        nxt.append(cur[int(m["index"])])
                elif isinstance(cur, dict) and m["index"] == "*":
                    nxt.extend(cur.values())
            else:
                items = cur if isinstance(cur, list) else []
                want = m["fval"].strip("\"'")
                for item in items:
                    got = jsonpath(item, m["fpath"])
                    value = _text(got[0]) if got else None
                    if (value == want) == (m["fop"] == "=="):
                        nxt.append(item)
        results = nxt
    return results


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def human_age(since: str | None, now: datetime.datetime) -> str:
    """Ages as kubectl prints them (apimachinery duration.HumanDuration)."""
    start = parse_time(since) if since else None
    if start is None:
        return "<unknown>"
    seconds = int((now - start).total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def _col(name: str, kind: str = "string", fmt: str = "", priority: int = 0, description: str = "") -> Column:
    return {
        "name": name,
        "type": kind,
        "format": fmt,
        "description": description or name,
        "priority": priority,
    }


def _g(obj: dict[str, Any], *keys: str) -> Any:
    cur: Any = obj
    for k in keys:
        cur = cur.get(k) if isinstance(cur, dict) else None
    return cur


def _age(obj: dict[str, Any], now: datetime.datetime) -> str:
    return human_age(_g(obj, "metadata", "creationTimestamp"), now)


def _name(obj: dict[str, Any], now: datetime.datetime) -> Any:
    return _g(obj, "metadata", "name")


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _pod_ready(obj: dict[str, Any], now: datetime.datetime) -> str:
    statuses = _g(obj, "status", "containerStatuses") or []
    total = len(_g(obj, "spec", "containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: dict[str, Any], now: datetime.datetime) -> str:
    if _g(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    for s in _g(obj, "status", "containerStatuses") or []:
        reason = _g(s, "state", "waiting", "reason") or _g(s, "state", "terminated", "reason")
        if reason:
            return str(reason)
    return str(_g(obj, "status", "reason") or _g(obj, "status", "phase") or "Pending")


def _pod_restarts(obj: dict[str, Any], now: datetime.datetime) -> int:
    return sum(int(s.get("restartCount") or 0) for s in _g(obj, "status", "containerStatuses") or [])


def _or_none(*keys: str) -> Cell:
    return lambda o, now: _g(o, *keys) or "<none>"


def _node_status(obj: dict[str, Any], now: datetime.datetime) -> str:
    for c in _g(obj, "status", "conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


def _service_ports(obj: dict[str, Any], now: datetime.datetime) -> str:
    ports = _g(obj, "spec", "ports") or []
    return (
        ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports if isinstance(p, dict))
        or "<none>"
    )


def _data_count(obj: dict[str, Any], now: datetime.datetime) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {}) + len(obj.get("stringData") or {})


def _node_selector(obj: dict[str, Any], now: datetime.datetime) -> str:
    sel = _g(obj, "spec", "template", "spec", "nodeSelector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _role_ref(obj: dict[str, Any], now: datetime.datetime) -> str:
    return f"{_g(obj, 'roleRef', 'kind') or ''}/{_g(obj, 'roleRef', 'name') or ''}"


def _event_object(obj: dict[str, Any], now: datetime.datetime) -> str:
    return f"{str(_g(obj, 'involvedObject', 'kind') or '').lower()}/{_g(obj, 'involvedObject', 'name') or ''}"


def _event_seen(obj: dict[str, Any], now: datetime.datetime) -> str:
    return human_age(
        obj.get("lastTimestamp") or obj.get("eventTime") or _g(obj, "metadata", "creationTimestamp"), now
    )


BUILTIN_COLUMNS: dict[str, list[tuple[Column, Cell]]] = {
    "pods": [
        (NAME, _name),
        (_col("Ready"), _pod_ready),
        (_col("Status"), _pod_status),
        (_col("Restarts", "string"), _pod_restarts),
        (AGE, _age),
        (_col("IP", priority=1), _or_none("status", "podIP")),
        (_col("Node", priority=1), _or_none("spec", "nodeName")),
        (_col("Nominated Node", priority=1), _or_none("status", "nominatedNodeName")),
        (_col("Readiness Gates", priority=1), lambda o, now: "<none>"),
    ],
    "namespaces": [
        (NAME, _name),
        (_col("Status"), lambda o, now: _g(o, "status", "phase") or "Active"),
        (AGE, _age),
    ],
    "customresourcedefinitions": [
        (NAME, _name),
        (_col("Created At", fmt="date-time"), lambda o, now: _g(o, "metadata", "creationTimestamp")),
    ],
    "events": [
        (_col("Last Seen"), _event_seen),
        (_col("Type"), lambda o, now: o.get("type", "")),
        (_col("Reason"), lambda o, now: o.get("reason", "")),
        (_col("Object"), _event_object),
        (_col("Message"), lambda o, now: o.get("message", "")),
    ],
    "leases": [
        (NAME, _name),
        (_col("Holder"), lambda o, now: _g(o, "spec", "holderIdentity") or ""),
        (AGE, _age),
    ],
    "nodes": [
        (NAME, _name),
        (_col("Status"), _node_status),
        (_col("Roles"), lambda o, now: "<none>"),
        (AGE, _age),
        (_col("Version"), lambda o, now: _g(o, "status", "nodeInfo", "kubeletVersion") or ""),
    ],
    "deployments": [
        (NAME, _name),
        (
            _col("Ready"),
            lambda o, now: f"{_g(o, 'status', 'readyReplicas') or 0}/{_g(o, 'spec', 'replicas') or 0}",
        ),
        (_col("Up-to-date", "integer"), lambda o, now: _g(o, "status", "updatedReplicas") or 0),
        (_col("Available", "integer"), lambda o, now: _g(o, "status", "availableReplicas") or 0),
        (AGE, _age),
    ],
    "daemonsets": [
        (NAME, _name),
        (_col("Desired", "integer"), lambda o, now: _g(o, "status", "desiredNumberScheduled") or 0),
        (_col("Current", "integer"), lambda o, now: _g(o, "status", "currentNumberScheduled") or 0),
        (_col("Ready", "integer"), lambda o, now: _g(o, "status", "numberReady") or 0),
        (_col("Up-to-date", "integer"), lambda o, now: _g(o, "status", "updatedNumberScheduled") or 0),
        (_col("Available", "integer"), lambda o, now: _g(o, "status", "numberAvailable") or 0),
        (_col("Node Selector"), _node_selector),
        (AGE, _age),
    ],
    "configmaps": [(NAME, _name), (_col("Data", "integer"), _data_count), (AGE, _age)],
    "services": [
        (NAME, _name),
        (_col("Type"), lambda o, now: _g(o, "spec", "type") or "ClusterIP"),
        (_col("Cluster-IP"), lambda o, now: _g(o, "spec", "clusterIP") or "<none>"),
        (_col("External-IP"), lambda o, now: ",".join(_g(o, "spec", "externalIPs") or []) or "<none>"),
        (_col("Port(s)"), _service_ports),
        (AGE, _age),
    ],
    "secrets": [
        (NAME, _name),
        (_col("Type"), lambda o, now: o.get("type") or "Opaque"),
        (_col("Data", "integer"), _data_count),
        (AGE, _age),
    ],
    "serviceaccounts": [
        (NAME, _name),
        (_col("Secrets", "integer"), lambda o, now: len(o.get("secrets") or [])),
        (AGE, _age),
    ],
    **{
        kind: [
            (NAME, _name),
            (_col("Created At", fmt="date"), lambda o, now: _g(o, "metadata", "creationTimestamp")),
        ]
        for kind in ("roles", "clusterroles")
    },
    **{
        kind: [(NAME, _name), (_col("Role"), _role_ref), (AGE, _age)]
        for kind in ("rolebindings", "clusterrolebindings")
    },
}


def _custom_columns(t: ResourceType) -> list[tuple[Column, Cell]]:
    if not t.printer_columns:
        return [(NAME, _name), (AGE, _age)]
    out: list[tuple[Column, Cell]] = [(NAME, _name)]
    for pc in t.printer_columns:
        kind = pc.get("type", "string")
        col = _col(
            pc.get("name", ""),
            kind,
            pc.get("format", ""),
            int(pc.get("priority", 0)),
            pc.get("description", ""),
        )
        out.append((col, _printer_cell(pc.get("jsonPath", ""), kind)))
    return out


def _printer_cell(path: str, kind: str) -> Cell:
    def cell(obj: dict[str, Any], now: datetime.datetime) -> Any:
        found = jsonpath(obj, path)
        if not found:
            return None
        value = found[0] if len(found) == 1 else " ".join(_text(v) for v in found)
        if kind == "date" and isinstance(value, str):
            return human_age(value, now)
        if isinstance(value, dict | list):
            return _text(value)
        return value

    return cell


def columns(t: ResourceType) -> list[tuple[Column, Cell]]:
    if t.builtin:
        return BUILTIN_COLUMNS.get(t.plural, [(NAME, _name), (AGE, _age)])
    return _custom_columns(t)


def to_table(
    t: ResourceType,
    objects: list[dict[str, Any]],
    rv: str,
    now: datetime.datetime,
    include: str = "Metadata",
    headers: bool = True,
) -> dict[str, Any]:
    cols = columns(t)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [cell(obj, now) for _, cell in cols]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "rows": rows,
    }
    table["columnDefinitions"] = [c for c, _ in cols] if headers else []
    return table
