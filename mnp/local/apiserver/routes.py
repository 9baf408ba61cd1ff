"""Request paths: which resource, namespace, name and subresource a URL addresses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    group: str
    version: str
    plural: str
    namespace: str | None  # None: no namespace in the path
    name: str
    sub: str


def parse_resource_path(path: str) -> Route | None:
    """`/api/v1/namespaces/ns/pods/p/status` → Route; None for non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        ns, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(
        group, version, rest[0], ns, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    )
