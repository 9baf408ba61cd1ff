"""One watch: optional initial state, then the hub's events filtered for this watcher, as NDJSON lines
(and empty heartbeats, never sent, at which the transport checks that the client is still there).

Implements the parts clients depend on: replay from a resourceVersion, 410 Expired as an ERROR
event, bookmarks only when asked, the `k8s.io/initial-events-end` bookmark for sendInitialEvents,
ADDED/DELETED when an object moves into or out of the selectors, and Table-formatted events.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnp.local.apiserver import table
from mnp.local.apiserver.catalog import ResourceType
from mnp.local.apiserver.errors import StatusError, status_body
from mnp.local.apiserver.selectors import FieldSelector, LabelSelector
from mnp.local.apiserver.watch import Event, TooOld

if TYPE_CHECKING:
    from mnp.local.apiserver.app import App


@dataclass(frozen=True, slots=True)
class WatchRequest:
    t: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    rv: int | None  # None: start with the current state
    send_initial: bool
    bookmarks: bool
    timeout: float
    table_type: str | None
    include: str

    @classmethod
    def from_query(
        cls,
        t: ResourceType,
        ns: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        q: dict[str, str],
        table_type: str | None,
    ) -> WatchRequest:
        raw_rv = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents") == "true"
        if send_initial and q.get("resourceVersionMatch") not in (None, "NotOlderThan"):
            raise StatusError(422, "sendInitialEvents requires resourceVersionMatch=NotOlderThan", "Invalid")
        try:
            rv = None if raw_rv in ("", "0") or send_initial else int(raw_rv)
        except ValueError:
            raise StatusError(400, f"invalid resource version: {raw_rv}") from None
        try:
            timeout = (
                float(q["timeoutSeconds"])
                if q.get("timeoutSeconds", "0") != "0"
                else 1800 + random.uniform(0, 1800)
            )
        except ValueError:
            raise StatusError(400, f"invalid timeoutSeconds: {q['timeoutSeconds']}") from None
        return cls(
            t,
            ns,
            labels,
            fields,
            rv,
            send_initial,
            q.get("allowWatchBookmarks") == "true",
            timeout,
            table_type,
            q.get("includeObject", "Metadata"),
        )

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        return self.labels.matches((obj.get("metadata") or {}).get("labels")) and self.fields.matches(obj)

    def translate(self, ev: Event) -> tuple[str, dict[str, Any]] | None:
        """The event this watcher sees for a hub event, if any."""
        if ev.key != self.t.store_key or (self.namespace is not None and ev.namespace != self.namespace):
            return None
        now_in = self.matches(ev.obj)
        if ev.type in ("ADDED", "DELETED"):
            return (ev.type, ev.obj) if now_in else None
        was_in = self.matches(ev.old)
        if now_in:
            return ("MODIFIED" if was_in else "ADDED", ev.obj)
        if was_in and ev.old is not None:
            # As the real cacher does: the previous object, stamped with this event's version.
            old = {**ev.old, "metadata": {**(ev.old.get("metadata") or {}), "resourceVersion": str(ev.rv)}}
            return ("DELETED", old)
        return None


HEARTBEAT = 1.0  # seconds between checks that an idle watcher's client is still connected


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _wrap(kind: str, body: bytes) -> bytes:
    """_line(kind, obj) from obj's compact JSON."""
    return b'{"type":"%s","object":%s}\n' % (kind.encode(), body)


def _expired(rv: int, oldest: int) -> bytes:
    status = status_body(410, f"too old resource version: {rv} ({oldest})", "Expired")
    return _line("ERROR", status)


def watch_stream(app: App, wr: WatchRequest) -> Iterator[bytes]:
    store, hub, faults = app.store, app.store.hub, app.faults
    t = wr.t

    def bookmark(rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _line("BOOKMARK", {"kind": t.kind, "apiVersion": t.api_version, "metadata": meta})

    first = [True]

    def encode(kind: str, obj: dict[str, Any]) -> bytes:
        out = store.view(t, obj)
        if wr.table_type:
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            out = table.to_table(t, [out], rv, store.clock(), wr.include, headers=first[0])
            first[0] = False
        return _line(kind, out)

    if faults.watch_gone:
        yield _expired(wr.rv or 0, hub.oldest() + 1)
        return
    drops = hub.drops
    if wr.rv is None:
        items, cursor = store.list(t, wr.namespace, wr.labels, wr.fields)
        for obj in items:
            yield encode("ADDED", obj)
        if wr.send_initial:
            yield bookmark(cursor, initial_end=True)
    else:
        cursor = wr.rv
    deadline = time.monotonic() + wr.timeout
    next_bookmark = time.monotonic() + faults.bookmark_seconds
    while True:
        now = time.monotonic()
        if now >= deadline:
            if wr.bookmarks:
                yield bookmark(cursor)
            return
        until = min(deadline, next_bookmark) if wr.bookmarks else deadline
        try:
            got = hub.after(t.store_key, cursor, max(0.0, min(until - now, HEARTBEAT)), drops)
        except TooOld as e:
            yield _expired(cursor, e.oldest)
            return
        if got is None:
            return
        events, newest = got
        if not events:
            yield b""  # nothing to send: lets the transport notice a client that went away
        for ev in events:
            cursor = ev.rv
            seen = wr.translate(ev)
            if seen is None:
                continue
            kind, obj = seen
            if obj is ev.obj and not wr.table_type and store.view(t, obj) is obj:
                line = ev.lines.get(kind)
                if line is None:
                    # A benign race: equal bytes either way.
                    line = ev.lines[kind] = _line(kind, obj) if ev.body is None else _wrap(kind, ev.body)
                yield line
            else:
                yield encode(kind, obj)
        cursor = newest
        if wr.bookmarks and time.monotonic() >= next_bookmark:
            yield bookmark(cursor)
            next_bookmark = time.monotonic() + faults.bookmark_seconds
