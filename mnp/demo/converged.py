"""Is the demo's policy in force as the API tells it? (pure)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def not_enforced(policies: Iterable[Mapping[str, Any]]) -> list[str]:
    """`ns/name: why` for every MultiNetworkPolicy whose Enforced condition is not True."""
    out = []
    for p in policies:
        meta = p.get("metadata") or {}
        ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        conditions = {c.get("type"): c for c in (p.get("status") or {}).get("conditions") or []}
        enforced = conditions.get("Enforced")
        if enforced is None:
            out.append(f"{ref}: no Enforced condition yet")
        elif enforced.get("status") != "True":
            out.append(f"{ref}: Enforced={enforced.get('status')} {enforced.get('message') or ''}".rstrip())
    return out


__all__ = ["not_enforced"]
