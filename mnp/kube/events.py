"""core/v1 Events about objects, like client-go's recorder: repeats of the same (object, type, reason,
message) from one recorder bump `count` and `lastTimestamp` of one Event instead of creating new ones.

Recording is best effort: a failure is logged, never raised, so that reporting cannot break the work.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict
from typing import Any

from mnp.kube.client import Client
from mnp.kube.errors import KubeApiError, KubeNotFound
from mnp.kube.resources import EVENTS

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
MAX_MESSAGE = 1024  # client-go truncates longer messages
CACHE_SIZE = 4096  # remembered (object, reason, message) keys, least recently used dropped first

_Key = tuple[str, str, str, str, str, str, str]  # uid, kind, namespace, name, type, reason, message


def now_timestamp() -> str:
    """Now, as Kubernetes writes Time fields (seconds, UTC): Events, conditions, status times."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference of an object: kind, namespace, name, uid, apiVersion, resourceVersion."""
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Writes Events from one `component` (and optionally `host`, e.g. the node name)."""

    def __init__(self, client: Client, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._seen: OrderedDict[_Key, tuple[str, str, int]] = OrderedDict()  # key → (namespace, name, count)
        self._lock = asyncio.Lock()

    async def record(
        self, obj: dict[str, Any], type: str, reason: str, message: str
    ) -> dict[str, Any] | None:
        """Create the Event, or count a repeat of one recorded before; the Event, None if writing failed."""
        if type not in (NORMAL, WARNING):
            raise ValueError(f"event type must be {NORMAL} or {WARNING}, not {type!r}")
        ref = involved_object(obj)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        uid, kind, namespace, name = (str(ref.get(f, "")) for f in ("uid", "kind", "namespace", "name"))
        key = (uid, kind, namespace, name, type, reason, message)
        what = f"{kind or 'object'} {namespace}/{name}" if namespace else f"{kind or 'object'} {name}"
        async with self._lock:
            try:
                seen = self._seen.get(key)
                if seen is not None:
                    try:
                        event = await self._bump(seen, message)
                        self._remember(key, seen[0], seen[1], seen[2] + 1)
                        return event
                    except KubeNotFound:
                        pass  # the Event expired or was deleted: start a new one
                event = await self._create(ref, type, reason, message)
                meta = event["metadata"]
                self._remember(key, meta["namespace"], meta["name"], 1)
                return event
            except KubeApiError as e:
                log.warning("event not recorded", extra={"object": what, "reason": reason, "error": str(e)})
                return None

    async def _create(self, ref: dict[str, Any], type: str, reason: str, message: str) -> dict[str, Any]:
        now = now_timestamp()
        # Events of cluster-scoped objects (Nodes, Namespaces) live in "default", as client-go puts them.
        namespace = ref.get("namespace") or "default"
        source = {"component": self.component} | ({"host": self.host} if self.host else {})
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": ref,
            "type": type,
            "reason": reason,
            "message": message,
            "source": source,
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return await self.client.create(EVENTS, body)

    async def _bump(self, seen: tuple[str, str, int], message: str) -> dict[str, Any]:
        namespace, name, count = seen
        patch = {"count": count + 1, "lastTimestamp": now_timestamp(), "message": message}
        return await self.client.patch(EVENTS, name, patch, namespace)

    def _remember(self, key: _Key, namespace: str, name: str, count: int) -> None:
        self._seen[key] = (namespace, name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
