"""The watch hub: a bounded history of change events and the condition watchers wait on.

Writers publish each change with its resourceVersion; a watcher keeps a cursor and reads the events
after it in order. A version older than the kept history is answered with 410 Expired, so clients
relist; after a restart the history starts empty at the stored resourceVersion.
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


class TooOld(Exception):
    def __init__(self, oldest: int) -> None:
        super().__init__(oldest)
        self.oldest = oldest


class WatchHub:
    """Events after `start_rv`, at most `keep` of them; `drops` counts forced disconnects."""

    def __init__(self, start_rv: int, keep: int = 20_000) -> None:
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._rvs: list[int] = []
        self._floor = start_rv  # events with rv > floor are all in history
        self._keep = keep
        self.drops = 0
        self.closed = False

    def publish(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._rvs.append(event.rv)
            if len(self._events) > self._keep * 1.2:
                cut = len(self._events) - self._keep
                self._floor = self._rvs[cut - 1]
                del self._events[:cut]
                del self._rvs[:cut]
            self._cond.notify_all()

    def oldest(self) -> int:
        with self._cond:
            return self._floor

    def check(self, rv: int) -> None:
        """Raise TooOld unless every event after rv is still kept."""
        with self._cond:
            if rv < self._floor:
                raise TooOld(self._floor + 1)

    def after(self, rv: int, timeout: float, drops: int) -> list[Event] | None:
        """Events after rv, waiting up to timeout for one; None once the hub drops watchers."""
        with self._cond:
            if rv < self._floor:
                raise TooOld(self._floor + 1)
            deadline_ok = self._cond.wait_for(
                lambda: self.closed or self.drops != drops or (self._rvs and self._rvs[-1] > rv),
                timeout,
            )
            if self.closed or self.drops != drops:
                return None
            if not deadline_ok:
                return []
            i = bisect.bisect_right(self._rvs, rv)
            return self._events[i:]

    def drop_all(self) -> None:
        with self._cond:
            self.drops += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
