"""A work queue of keys: bursts coalesce, one key is never worked on twice at once, retries are delayed.

A key added while it waits is not added twice; a key added while a worker holds it is worked on
again once that worker is done (the newer state is never lost). Flags given with `add` (such as
"check for drift") accumulate until the key is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: dict[K, set[str]] = {}  # queued, with their flags
        self._busy: set[K] = set()
        self._again: dict[K, set[str]] = {}  # added while busy
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting) + len(self._again)

    def add(self, key: K, *flags: str) -> None:
        if key in self._busy:
            self._again.setdefault(key, set()).update(flags)
            return
        if key in self._waiting:
            self._waiting[key].update(flags)
            return
        self._waiting[key] = set(flags)
        self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float, *flags: str) -> None:
        """`add` after `delay` seconds; an earlier pending retry of the same key is kept."""
        if key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key, *flags)

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def get(self) -> tuple[K, frozenset[str]]:
        """The next key and its flags; the caller must call `done(key)` when finished."""
        key = await self._ready.get()
        flags = self._waiting.pop(key)
        self._busy.add(key)
        return key, frozenset(flags)

    def done(self, key: K) -> None:
        self._busy.discard(key)
        if key in self._again:
            self.add(key, *self._again.pop(key))

    def idle(self) -> bool:
        return not self._waiting and not self._busy and not self._again


__all__ = ["KeyQueue"]
