"""Helpers for the status objects mnp writes (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal but for conditions' lastTransitionTime (so a sync with nothing new writes nothing)."""

    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(s or {})
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in out.get("conditions") or []
        ]
        return out

    return strip(a) == strip(b)


__all__ = ["same_status"]
