"""List+watch of one resource (an informer): an in-memory cache and ordered change events.

Lists in pages, then watches from the list's resourceVersion with bookmarks and a server timeout; a
stream that ends normally is resumed from the last version seen; 410 Gone relists and delivers the
difference between the old cache and the new list as events, so no delete that happened while
disconnected is missed; connection errors back off (capped, jittered) and resume. Never a tight loop:
kr8s's own watch re-watches an expired version forever (../shared/APISERVER.md §12), so it is not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mnp.kube.client import Client
from mnp.kube.errors import KubeApiError, KubeGone, error_from_status
from mnp.kube.resources import Resource

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace or "", name)


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change seen by an informer; `old` is the cached object before it (None for ADDED)."""

    type: EventType
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


Handler = Callable[[WatchEvent], Awaitable[None]]


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """Keeps a cache of one resource's matching objects current and tells subscribers what changed.

    Add handlers and queues before `run()`; a queue subscribed later starts with an ADDED event for
    every cached object. Handlers are awaited in order, one event at a time (a slow handler slows the
    informer, it never reorders); an exception in a handler is logged and does not stop the informer.
    """

    def __init__(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace if resource.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.timeout_seconds = timeout_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0  # lists after the first one (410 Gone)
        self.reconnects = 0  # watches resumed after an error
        self._cache: dict[Key, dict[str, Any]] = {}
        self._handlers: list[Handler] = []
        self._queues: list[asyncio.Queue[WatchEvent]] = []
        self._what = resource.describe(self.namespace, None)
        selectors = ",".join(s for s in (label_selector, field_selector) if s)
        self._what += f" ({selectors})" if selectors else ""

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._cache.get((namespace or "", name))

    def items(self) -> list[dict[str, Any]]:
        """The cached objects, sorted by namespace and name."""
        return [self._cache[k] for k in sorted(self._cache)]

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def subscribe(self) -> asyncio.Queue[WatchEvent]:
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        for obj in self.items():
            queue.put_nowait(WatchEvent(EventType.ADDED, obj))
        self._queues.append(queue)
        return queue

    async def run(self) -> None:
        """List, then watch, forever (until cancelled)."""
        need_list, reason = True, "initial list"
        failures = 0  # consecutive rounds that made no progress: they set the backoff
        gone = False  # the last round ended in 410 Gone
        while True:
            loop_started = asyncio.get_running_loop().time()
            try:
                if need_list:
                    await self._list(reason)
                    need_list = False
                progressed = await self._watch()
                gone = False
                if progressed or asyncio.get_running_loop().time() - loop_started > 1.0:
                    failures = 0
                    continue
                # A stream closed at once with nothing in it: resume, but not in a tight loop.
                failures += 1
                reason = "watch ended at once"
            except KubeGone as e:
                need_list, reason = True, f"watch expired: {e.message}"
                self.relists += 1
                # The server answers: the back-off of an outage before this is over (a restarted
                # server expires every old version); only expiries in a row back off.
                failures = failures + 1 if gone else 1
                gone = True
                if failures == 1:
                    continue  # the first relist after an expiry is immediate
            except KubeApiError as e:
                gone = False
                failures += 1
                self.reconnects += 1
                reason = str(e)
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "watch failed, reconnecting",
                    extra={"resource": self._what, "reason": reason, "attempt": failures},
                )
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        cap = min(self.backoff_max, self.backoff_initial * 2 ** max(0, failures - 1))
        return float(cap * random.uniform(0.5, 1.0))

    async def _list(self, reason: str) -> None:
        listed = await self.client.list(
            self.resource,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        old = self._cache
        new = {object_key(o): o for o in listed.items}
        events = [WatchEvent(EventType.DELETED, old[k], old[k]) for k in sorted(old.keys() - new.keys())]
        for k in sorted(new):
            before = old.get(k)
            if before is None:
                events.append(WatchEvent(EventType.ADDED, new[k]))
            elif resource_version_of(before) != resource_version_of(new[k]):
                events.append(WatchEvent(EventType.MODIFIED, new[k], before))
        self._cache = new
        self.resource_version = listed.resource_version
        if self.synced.is_set():
            log.info(
                "relisted",
                extra={"resource": self._what, "reason": reason, "items": len(new), "changes": len(events)},
            )
        for event in events:
            await self._deliver(event)
        self.synced.set()

    async def _watch(self) -> bool:
        """One watch stream from `resource_version` until the server ends it; True if it carried news."""
        params = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.timeout_seconds),
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        progressed = False
        # Bookmarks or events come well within timeoutSeconds; silence beyond it means a dead connection.
        read_timeout = self.timeout_seconds + 30.0
        async with self.client.stream(
            self.resource.path(self.namespace), params, read_timeout, self._what
        ) as lines:
            async for line in lines:
                try:
                    event = json.loads(line)
                    kind, obj = str(event["type"]), event["object"]
                except (ValueError, KeyError, TypeError) as e:
                    raise KubeApiError(200, "BadWatchEvent", f"undecodable watch event: {line[:200]}") from e
                if kind == "ERROR":
                    code = int(obj.get("code") or 500) if isinstance(obj, dict) else 500
                    raise error_from_status(code, obj, self._what)
                rv = resource_version_of(obj)
                if kind == "BOOKMARK":
                    if rv:
                        self.resource_version = rv
                    progressed = True
                    continue
                await self._apply(kind, obj)
                if rv:
                    self.resource_version = rv
                progressed = True
        return progressed

    async def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        old = self._cache.get(key)
        if kind in (EventType.ADDED, EventType.MODIFIED):
            if old is not None and resource_version_of(old) == resource_version_of(obj):
                return  # already seen (a replay after a resume): deliver each change once
            self._cache[key] = obj
            await self._deliver(WatchEvent(EventType.MODIFIED if old else EventType.ADDED, obj, old))
        elif kind == EventType.DELETED:
            if old is None:
                return  # never seen, so nothing to take back
            del self._cache[key]
            await self._deliver(WatchEvent(EventType.DELETED, obj, old))
        else:
            log.debug("unknown watch event type", extra={"resource": self._what, "type": kind})

    async def _deliver(self, event: WatchEvent) -> None:
        for queue in self._queues:
            queue.put_nowait(event)
        for handler in self._handlers:
            try:
                await handler(event)
            except Exception:
                log.exception(
                    "watch handler failed",
                    extra={"resource": self._what, "object": "/".join(filter(None, object_key(event.obj)))},
                )
