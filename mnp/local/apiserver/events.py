"""events.k8s.io/v1 Events stored as core/v1 Events, so `kubectl describe` (which lists core events by
involvedObject) shows events written through either API, as on a real cluster."""

from __future__ import annotations

from typing import Any

# events.k8s.io/v1 field ↔ core/v1 field, from k8s.io/kubernetes pkg/apis/events/v1 conversion.
_RENAMED = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def to_core(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for new, old in _RENAMED:
        if new in out:
            out[old] = out.pop(new)
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out


def from_core(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for new, old in _RENAMED:
        if old in out:
            out[new] = out.pop(old)
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    return out


def is_new_api(group: str, plural: str) -> bool:
    return group == "events.k8s.io" and plural == "events"
