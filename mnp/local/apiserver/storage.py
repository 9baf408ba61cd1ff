"""Durable object storage: sqlite in WAL mode with one global, monotonic resourceVersion.

Every write is one sqlite transaction that stores the objects and the new resourceVersion together,
so a crash (kill -9) after a write was acknowledged loses nothing and a restart continues the
counter. All objects are also held in memory, indexed by resource, for lists and watches.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

StoreKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster scope

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
  grp TEXT NOT NULL, res TEXT NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL,
  rv INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (grp, res, ns, name)
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


class Storage:
    """Objects by resource in memory, mirrored to sqlite; callers serialise writes (one lock)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9); only a
        # power loss could lose the last commits, which the local cluster does not need to survive.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._io = threading.Lock()
        self.rv = 0
        self._objects: dict[StoreKey, dict[ObjKey, dict[str, Any]]] = {}
        self._load()

    def _load(self) -> None:
        row = self._db.execute("SELECT v FROM meta WHERE k='rv'").fetchone()
        self.rv = int(row[0]) if row else 0
        for grp, res, ns, name, body in self._db.execute("SELECT grp, res, ns, name, body FROM objects"):
            self._objects.setdefault((grp, res), {})[(ns, name)] = json.loads(body)

    def next_rv(self) -> int:
        return self.rv + 1

    def get(self, key: StoreKey, ns: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(key, {}).get((ns, name))

    def items(self, key: StoreKey, ns: str | None = None) -> Iterator[dict[str, Any]]:
        objs = self._objects.get(key, {})
        if ns is None:
            yield from list(objs.values())
        else:
            yield from [o for (n, _), o in list(objs.items()) if n == ns]

    def resource_keys(self) -> list[StoreKey]:
        return list(self._objects)

    def count(self) -> int:
        return sum(len(v) for v in self._objects.values())

    def commit(self, rv: int, changes: list[tuple[StoreKey, str, str, dict[str, Any] | None]]) -> None:
        """Store (key, ns, name, object or None for removal) changes at resourceVersion rv, atomically."""
        with self._io:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for (grp, res), ns, name, obj in changes:
                    if obj is None:
                        cur.execute(
                            "DELETE FROM objects WHERE grp=? AND res=? AND ns=? AND name=?",
                            (grp, res, ns, name),
                        )
                    else:
                        cur.execute(
                            "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?)",
                            (grp, res, ns, name, rv, json.dumps(obj, separators=(",", ":"))),
                        )
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(rv),))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self.rv = rv
        for key, ns, name, obj in changes:
            bucket = self._objects.setdefault(key, {})
            if obj is None:
                bucket.pop((ns, name), None)
            else:
                bucket[(ns, name)] = obj

    def close(self) -> None:
        with self._io:
            self._db.close()
