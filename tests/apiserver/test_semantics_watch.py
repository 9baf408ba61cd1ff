"""Watch semantics over plain HTTPS: replay from a version, initial state, bookmarks, 410 Expired,
selector transitions, timeouts, forced drops, and what a restart does to watches."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.apiserver.conftest import ApiServer, running_apiserver, unique
from tests.apiserver.test_semantics_support import Http, crd, install, namespace, rv, widget

W = "/apis/example.com/v1"
MERGE = "application/merge-patch+json"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with running_apiserver() as s:
        install(Http(s), crd("example.com", "widgets", "Widget"))
        yield s


@pytest.fixture
def h(server: ApiServer) -> Http:
    return Http(server)


def test_watch_from_a_version_replays_every_later_change_in_order(h: Http) -> None:
    ns = namespace(h, unique("w"))
    first = h.create(f"{W}/namespaces/{ns}/widgets", widget("a"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("b"))
    h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/a", {"spec": {"size": 2}}, ctype=MERGE)
    h.ok("DELETE", f"{W}/namespaces/{ns}/widgets/b")
    w = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion=str(rv(first)))
    got = w.wait_for(3)
    assert w.names() == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [rv(o) for _, o in got]
    assert versions == sorted(versions) and versions[0] > rv(first)
    w.close()


def test_watch_from_zero_starts_with_synthetic_added_then_follows_live(h: Http) -> None:
    ns = namespace(h, unique("w"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("old"))
    w = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    w.wait_for(1)
    h.create(f"{W}/namespaces/{ns}/widgets", widget("new"))
    w.wait_for(2)
    assert w.names() == [("ADDED", "old"), ("ADDED", "new")]
    w.close()


def test_bookmarks_come_only_when_asked_and_carry_the_current_version(h: Http) -> None:
    h.ok("POST", "/mnp-admin/faults", {"bookmarkSeconds": 0.2})
    ns = namespace(h, unique("w"))
    asked = h.watch(f"{W}/namespaces/{ns}/widgets", allowWatchBookmarks="true", resourceVersion="0")
    silent = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("x"))
    time.sleep(0.7)
    marks = [o for t, o in asked.events if t == "BOOKMARK"]
    assert marks and marks[-1]["kind"] == "Widget" and rv(marks[-1]) >= rv(made)
    assert [t for t, _ in silent.events] == ["ADDED"]
    asked.close()
    silent.close()


def test_send_initial_events_ends_the_initial_state_with_an_annotated_bookmark(h: Http) -> None:
    ns = namespace(h, unique("w"))
    for n in ("a", "b"):
        h.create(f"{W}/namespaces/{ns}/widgets", widget(n))
    w = h.watch(f"{W}/namespaces/{ns}/widgets", sendInitialEvents="true", resourceVersionMatch="NotOlderThan",
                allowWatchBookmarks="true")
    got = w.wait_for(3)
    assert [t for t, _ in got] == ["ADDED", "ADDED", "BOOKMARK"]
    assert got[2][1]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    w.close()


def test_a_label_change_moves_an_object_into_and_out_of_a_selector(h: Http) -> None:
    ns = namespace(h, unique("w"))
    node_a = h.watch(f"{W}/namespaces/{ns}/widgets", labelSelector="node=a", resourceVersion="0")
    node_b = h.watch(f"{W}/namespaces/{ns}/widgets", labelSelector="node in (b)", resourceVersion="0")
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("r", labels={"node": "a"}))
    moved = h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/r", {"metadata": {"labels": {"node": "b"}}}, ctype=MERGE)
    a, b = node_a.wait_for(2), node_b.wait_for(1)
    assert node_a.names() == [("ADDED", "r"), ("DELETED", "r")]
    assert a[1][1]["metadata"]["labels"] == {"node": "a"} and rv(a[1][1]) == rv(moved)
    assert node_b.names() == [("ADDED", "r")] and b[0][1]["metadata"]["labels"] == {"node": "b"}
    assert rv(made) < rv(moved)
    node_a.close()
    node_b.close()


def test_watch_with_field_selector_sees_only_the_named_object(h: Http) -> None:
    ns = namespace(h, unique("w"))
    w = h.watch(f"{W}/namespaces/{ns}/widgets", fieldSelector="metadata.name=one", resourceVersion="0")
    h.create(f"{W}/namespaces/{ns}/widgets", widget("two"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("one"))
    w.wait_for(1)
    assert w.names() == [("ADDED", "one")]
    w.close()


def test_timeout_seconds_ends_the_stream_with_a_bookmark_when_asked(h: Http) -> None:
    ns = namespace(h, unique("w"))
    start = time.monotonic()
    w = h.watch(f"{W}/namespaces/{ns}/widgets", timeoutSeconds="1", allowWatchBookmarks="true", resourceVersion="0")
    assert w.ended.wait(5)
    assert 0.9 < time.monotonic() - start < 3
    assert [t for t, _ in w.events] == ["BOOKMARK"]


def test_fault_switches_drop_open_watches_and_answer_new_ones_with_410(h: Http) -> None:
    ns = namespace(h, unique("w"))
    w = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    time.sleep(0.1)
    h.ok("POST", "/mnp-admin/faults", {"dropWatches": True})
    assert w.ended.wait(3)
    h.ok("POST", "/mnp-admin/faults", {"watchGone": True})
    gone = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="1")
    assert gone.ended.wait(3)
    assert gone.events[0][0] == "ERROR" and gone.events[0][1]["code"] == 410
    h.ok("POST", "/mnp-admin/faults", {"reset": True})


def test_after_a_crash_a_watch_from_the_last_version_resumes_and_older_ones_get_410(server: ApiServer) -> None:
    h = Http(server)
    ns = namespace(h, unique("w"))
    early = h.create(f"{W}/namespaces/{ns}/widgets", widget("a"))
    last = h.create(f"{W}/namespaces/{ns}/widgets", widget("b"))
    server.restart(crash=True)
    h = Http(server)
    stale = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion=str(rv(early)))
    assert stale.ended.wait(3)
    assert stale.events[0][0] == "ERROR" and stale.events[0][1]["reason"] == "Expired"
    assert stale.events[0][1]["code"] == 410
    resumed = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion=str(rv(last)))
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("c"))
    resumed.wait_for(1)
    assert resumed.names() == [("ADDED", "c")] and rv(made) > rv(last)
    resumed.close()


def test_list_with_exact_version_that_is_gone_is_410(h: Http) -> None:
    status, body, _ = h.call("GET", f"{W}/widgets", params={"resourceVersion": "1", "resourceVersionMatch": "Exact"})
    assert status == 410 and body["reason"] == "Expired"


def test_table_watch_sends_one_row_tables_with_columns_only_first(h: Http) -> None:
    ns = namespace(h, unique("w"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("t1"))
    conn_h = Http(h.server)
    w = conn_h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    w.close()
    # Table form needs the Accept header: use a raw call through http.client.
    import http.client
    import json
    import ssl
    from urllib.parse import urlsplit

    url, token, ca = h.server.credentials()
    u = urlsplit(url)
    conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ssl.create_default_context(cadata=ca),
                                       timeout=5)
    conn.request("GET", f"{W}/namespaces/{ns}/widgets?watch=true&resourceVersion=0",
                 headers={"Authorization": f"Bearer {token}",
                          "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "application/json;as=Table;v=v1;g=meta.k8s.io"
    first = json.loads(resp.readline())
    h.create(f"{W}/namespaces/{ns}/widgets", widget("t2"))
    second = json.loads(resp.readline())
    conn.close()
    assert first["object"]["kind"] == "Table" and first["object"]["columnDefinitions"]
    assert second["object"]["columnDefinitions"] == [] and second["object"]["rows"][0]["cells"][0] == "t2"


def test_watchers_of_two_resources_each_get_their_own_events_when_writes_interleave(h: Http) -> None:
    h.ok("POST", "/mnp-admin/faults", {"bookmarkSeconds": 0.2})
    ns = namespace(h, unique("w"))
    widgets = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    maps = h.watch(f"/api/v1/namespaces/{ns}/configmaps", resourceVersion="0", allowWatchBookmarks="true")
    for n in range(3):
        h.create(f"{W}/namespaces/{ns}/widgets", widget(f"w{n}"))
        h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"c{n}"}})
    last = h.create(f"{W}/namespaces/{ns}/widgets", widget("w3"))
    widgets.wait_for(4)
    time.sleep(0.7)
    assert widgets.names() == [("ADDED", f"w{n}") for n in range(4)]
    assert maps.names() == [("ADDED", f"c{n}") for n in range(3)]
    # The configmap watcher was not woken by the last widget write, and still bookmarks past it.
    marks = [o for t, o in maps.events if t == "BOOKMARK"]
    assert marks and rv(marks[-1]) >= rv(last)
    h.ok("POST", "/mnp-admin/faults", {"reset": True})
    widgets.close()
    maps.close()
