"""List paging (`limit` / `continue`): pages are cut by (namespace, name) order.

A continue token carries the resourceVersion of the first page and the last key served. Later pages
show the current state after that key (not a snapshot at the first page's version: there is no
MVCC here); a token older than the watch history is refused with 410 Expired, as on the real server.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mnp.local.apiserver.errors import StatusError


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def page(
    items: list[dict[str, Any]], rv: int, limit: str | None, token: str | None, oldest: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The items of this page (items sorted by key) and list metadata to add (`continue`, counts)."""
    start_rv = rv
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()))
            start_rv, after = int(state["rv"]), tuple(state["after"])
        except (ValueError, KeyError, TypeError):
            raise StatusError(400, "continue key is not valid") from None
        if start_rv < oldest:
            raise StatusError(
                410,
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
                "Expired",
            )
        items = [i for i in items if _key(i) > after]
    try:
        n = int(limit) if limit else 0
    except ValueError:
        raise StatusError(400, f"invalid limit: {limit}") from None
    meta: dict[str, Any] = {"resourceVersion": str(start_rv)}
    if n <= 0 or len(items) <= n:
        return items, meta
    shown = items[:n]
    last = list(_key(shown[-1]))
    meta["continue"] = base64.urlsafe_b64encode(json.dumps({"rv": start_rv, "after": last}).encode()).decode()
    meta["remainingItemCount"] = len(items) - n
    return shown, meta
