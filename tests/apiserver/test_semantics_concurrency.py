"""Many writers and watchers at once over plain HTTPS: every watcher's stream, replayed, equals the
final list for its selector, with versions strictly increasing (nothing out of order, missed or
duplicated), including objects moving in and out of label selectors."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from tests.apiserver.conftest import ApiServer
from tests.apiserver.test_semantics_support import Http, crd, install, namespace, rv, widget

W = "/apis/example.com/v1"
MERGE = "application/merge-patch+json"
SELECTORS = ("", "node=a", "node=b", "node in (a,c)", "node!=a", "!node")


def replay(events: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for kind, obj in events:
        name = obj["metadata"]["name"]
        if kind in ("ADDED", "MODIFIED"):
            assert kind == "MODIFIED" or name not in state, f"ADDED twice: {name}"
            assert kind == "ADDED" or name in state, f"MODIFIED before ADDED: {name}"
            state[name] = obj
        elif kind == "DELETED":
            assert name in state, f"DELETED unknown: {name}"
            del state[name]
    return state


def test_writers_and_watchers_agree_on_every_event(apiserver: ApiServer) -> None:
    h = Http(apiserver)
    install(h, crd("example.com", "widgets", "Widget"))
    ns = namespace(h, "conc")
    start = rv(h.get(f"{W}/namespaces/{ns}/widgets"))
    h.ok("POST", "/mnp-admin/faults", {"bookmarkSeconds": 0.2})  # bookmarks tell when a watcher caught up
    watches = {
        sel: h.watch(
            f"{W}/namespaces/{ns}/widgets",
            resourceVersion=str(start),
            allowWatchBookmarks="true",
            **({"labelSelector": sel} if sel else {}),
        )
        for sel in SELECTORS
    }

    def writer(index: int) -> None:
        rnd = random.Random(index)
        c = Http(apiserver)
        for n in range(40):
            name = f"w{index}-{rnd.randrange(8)}"
            path = f"{W}/namespaces/{ns}/widgets/{name}"
            choice = rnd.random()
            node = rnd.choice(["a", "b", "c", None])
            if choice < 0.4:
                labels = {"node": node} if node else {}
                c.call("POST", f"{W}/namespaces/{ns}/widgets", widget(name, size=1 + n % 9, labels=labels))
            elif choice < 0.7:
                c.call("PATCH", path, {"metadata": {"labels": {"node": node}}}, ctype=MERGE)
            elif choice < 0.85:
                c.call("PATCH", path, {"spec": {"size": 1 + n % 10}}, ctype=MERGE)
            else:
                c.call("DELETE", path)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = h.get(f"{W}/namespaces/{ns}/widgets")
    last = rv(final)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        any(rv(o) >= last for _, o in w.events) for w in watches.values()
    ):
        time.sleep(0.05)
    assert len(final["items"]) > 0
    for sel, w in watches.items():
        events = [(t, o) for t, o in w.events if t != "BOOKMARK" and rv(o) <= last]
        versions = [rv(o) for _, o in events]
        assert versions == sorted(set(versions)), f"{sel!r}: versions out of order or repeated"
        got = replay(events)
        want = {
            i["metadata"]["name"]: i
            for i in h.get(f"{W}/namespaces/{ns}/widgets", params={"labelSelector": sel} if sel else None)[
                "items"
            ]
        }
        assert {k: rv(v) for k, v in got.items()} == {k: rv(v) for k, v in want.items()}, sel
        assert got == want, sel
        w.close()
