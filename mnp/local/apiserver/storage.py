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

from mnp.local.apiserver.values import loads_interned

StoreKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster scope
IndexRow = tuple[StoreKey, str, str, str, tuple[str, ...]]  # key, namespace, name, uid, owner uids

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
  grp TEXT NOT NULL, res TEXT NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL,
  rv INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (grp, res, ns, name)
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


# etcd's default request limit, which is what makes the real server refuse a bigger object.
MAX_OBJECT_BYTES = 1536 * 1024


class ObjectTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class Storage:
    """Objects by resource in memory, mirrored to sqlite; callers serialise writes (one lock).

    Objects read back at startup stay as their JSON text until first used, so a restart over many
    objects is quick; the uid and owner uids kept in their own columns feed the garbage collector's
    index without parsing anything.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9); only a
        # power loss could lose the last commits, which the local cluster does not need to survive.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}
        for column in ("uid", "owners"):
            if column not in columns:
                self._db.execute(f"ALTER TABLE objects ADD COLUMN {column} TEXT")
        self._io = threading.Lock()
        self.rv = 0
        self._objects: dict[StoreKey, dict[ObjKey, dict[str, Any] | str]] = {}
        self.loaded_index: list[IndexRow] = []
        self._load()

    def _load(self) -> None:
        row = self._db.execute("SELECT v FROM meta WHERE k='rv'").fetchone()
        self.rv = int(row[0]) if row else 0
        query = "SELECT grp, res, ns, name, body, uid, owners FROM objects"
        for grp, res, ns, name, body, uid, owners in self._db.execute(query):
            if uid is None:  # written before these columns existed
                obj = loads_interned(body)
                self._objects.setdefault((grp, res), {})[(ns, name)] = obj
                uid, owner_uids = _uids(obj)
            else:
                self._objects.setdefault((grp, res), {})[(ns, name)] = body
                owner_uids = tuple(json.loads(owners)) if owners else ()
            self.loaded_index.append(((grp, res), ns, name, uid, owner_uids))

    def next_rv(self) -> int:
        return self.rv + 1

    def _parsed(self, bucket: dict[ObjKey, dict[str, Any] | str], key: ObjKey) -> dict[str, Any] | None:
        value = bucket.get(key)
        if not isinstance(value, str):
            return value
        obj: dict[str, Any] = loads_interned(value)
        with self._io:
            if bucket.get(key) is value:  # a write since then wins over this parse
                bucket[key] = obj
                return obj
        return self._parsed(bucket, key)

    def get(self, key: StoreKey, ns: str, name: str) -> dict[str, Any] | None:
        return self._parsed(self._objects.get(key, {}), (ns, name))

    def items(self, key: StoreKey, ns: str | None = None) -> Iterator[dict[str, Any]]:
        bucket = self._objects.get(key, {})
        keys = list(bucket) if ns is None else [k for k in list(bucket) if k[0] == ns]
        for k in keys:
            obj = self._parsed(bucket, k)
            if obj is not None:
                yield obj

    def resource_keys(self) -> list[StoreKey]:
        return list(self._objects)

    def count(self) -> int:
        return sum(len(v) for v in self._objects.values())

    def commit(
        self, rv: int, changes: list[tuple[StoreKey, str, str, dict[str, Any] | None]]
    ) -> list[bytes | None]:
        """Store (key, ns, name, object or None for removal) changes at resourceVersion rv, atomically;
        returns each object's compact JSON as written (None for a removal), for answers to reuse.

        The objects themselves are kept, not copies: from here on nobody may change them (what `get`
        returns is shared the same way). Their keys are interned where they were decoded.
        """
        rows: list[tuple[str, str, str, str, str | None, str, str | None]] = []
        for (grp, res), ns, name, obj in changes:
            if obj is None:
                rows.append((grp, res, ns, name, None, "", None))
                continue
            text = json.dumps(obj, separators=(",", ":"), check_circular=False)
            if len(text) > MAX_OBJECT_BYTES:
                raise ObjectTooLarge(len(text))
            uid, owner_uids = _uids(obj)
            rows.append((grp, res, ns, name, text, uid, json.dumps(owner_uids) if owner_uids else None))
        with self._io:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for grp, res, ns, name, body, uid, owners in rows:
                    if body is None:
                        cur.execute(
                            "DELETE FROM objects WHERE grp=? AND res=? AND ns=? AND name=?",
                            (grp, res, ns, name),
                        )
                    else:
                        cur.execute(
                            "INSERT OR REPLACE INTO objects (grp, res, ns, name, rv, body, uid, owners) "
                            "VALUES (?,?,?,?,?,?,?,?)",
                            (grp, res, ns, name, rv, body, uid, owners),
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
        return [None if body is None else body.encode() for _, _, _, _, body, _, _ in rows]

    def close(self) -> None:
        with self._io:
            self._db.close()


def _uids(obj: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    meta = obj.get("metadata") or {}
    owners = tuple(str(r.get("uid", "")) for r in meta.get("ownerReferences") or [] if isinstance(r, dict))
    return str(meta.get("uid", "")), owners
