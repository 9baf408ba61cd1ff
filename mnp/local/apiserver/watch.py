"""The watch hub: a bounded history of change events and the conditions watchers wait on.

Writers publish each change with its resourceVersion; a watcher keeps a cursor and reads the events
after it in order. A version older than the kept history is answered with 410 Expired, so clients
relist; after a restart the history starts empty at the stored resourceVersion. Watchers wait per
resource, so a write wakes only the watchers of its own resource.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any

from mnp.local.apiserver.storage import StoreKey


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StoreKey
    namespace: str
    obj: dict[str, Any]
    old: dict[str, Any] | None
    # Encoded watch lines of `obj`, shared by every watcher that sends it unchanged (type → line).
    lines: dict[str, bytes] = field(default_factory=dict, compare=False)
    body: bytes | None = field(default=None, compare=False)  # `obj` as compact JSON, when known


class TooOld(Exception):
    def __init__(self, oldest: int) -> None:
        super().__init__(oldest)
        self.oldest = oldest


class WatchHub:
    """Events after `start_rv`, at most `keep` of them; `drops` counts forced disconnects."""

    def __init__(self, start_rv: int, keep: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[StoreKey, threading.Condition] = {}  # one per watched resource
        self._newest: dict[StoreKey, int] = {}  # rv of each resource's newest event
        self._events: list[Event] = []
        self._rvs: list[int] = []
        self._floor = start_rv  # events with rv > floor are all in history
        self._keep = keep
        self.drops = 0
        self.closed = False

    def publish(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            self._rvs.append(event.rv)
            self._newest[event.key] = event.rv
            if len(self._events) > self._keep * 1.2:
                cut = len(self._events) - self._keep
                self._floor = self._rvs[cut - 1]
                del self._events[:cut]
                del self._rvs[:cut]
            waiting = self._waiting.get(event.key)
            if waiting is not None:
                waiting.notify_all()

    def oldest(self) -> int:
        with self._lock:
            return self._floor

    def check(self, rv: int) -> None:
        """Raise TooOld unless every event after rv is still kept."""
        with self._lock:
            if rv < self._floor:
                raise TooOld(self._floor + 1)

    def after(self, key: StoreKey, rv: int, timeout: float, drops: int) -> tuple[list[Event], int] | None:
        """Events of resource `key` after rv, waiting up to timeout for one, and the cursor to continue
        from: the newest rv in history, so that a watcher of a quiet resource keeps up with the history
        it skips. None once the hub drops watchers."""
        with self._lock:
            if rv < self._floor:
                raise TooOld(self._floor + 1)
            waiting = self._waiting.get(key)
            if waiting is None:
                waiting = self._waiting[key] = threading.Condition(self._lock)
            found = waiting.wait_for(
                lambda: self.closed or self.drops != drops or self._newest.get(key, 0) > rv, timeout
            )
            if self.closed or self.drops != drops:
                return None
            cursor = max(rv, self._rvs[-1]) if self._rvs else rv
            if not found:
                return [], cursor
            i = bisect.bisect_right(self._rvs, rv)
            return [e for e in self._events[i:] if e.key == key], cursor

    def _wake_all(self) -> None:
        for waiting in self._waiting.values():
            waiting.notify_all()

    def drop_all(self) -> None:
        with self._lock:
            self.drops += 1
            self._wake_all()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wake_all()
