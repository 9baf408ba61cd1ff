"""The watch hub wakes only the watchers of the resource written, and keeps quiet watchers current."""

from __future__ import annotations

import json
import threading
import time

from mnp.local.apiserver.watch import Event, WatchHub

WIDGETS = ("example.com", "widgets")
MAPS = ("", "configmaps")


def _event(rv: int, key: tuple[str, str]) -> Event:
    return Event(rv, "ADDED", key, "default", {"metadata": {"name": f"o{rv}"}}, None)


def test_a_watcher_is_not_woken_by_writes_of_another_resource_but_by_its_own() -> None:
    hub = WatchHub(0)
    got: list[tuple[float, tuple[list[Event], int] | None]] = []

    def wait(rv: int, timeout: float) -> None:
        answer = hub.after(MAPS, rv, timeout, 0)
        got.append((time.monotonic(), answer))

    start = time.monotonic()
    waiter = threading.Thread(target=wait, args=(0, 0.5))
    waiter.start()
    for rv in range(1, 4):
        hub.publish(_event(rv, WIDGETS))
    waiter.join()
    woke, answer = got[0]
    assert woke - start >= 0.45 and answer == ([], 3)  # timed out, with a cursor past the widgets

    waiter = threading.Thread(target=wait, args=(3, 5.0))
    waiter.start()
    time.sleep(0.1)
    hub.publish(_event(4, WIDGETS))
    sent = time.monotonic()
    hub.publish(_event(5, MAPS))
    waiter.join()
    woke, answer = got[1]
    assert answer is not None and woke - sent < 1.0
    events, cursor = answer
    assert [e.rv for e in events] == [5] and cursor == 5


def test_events_of_the_resource_come_in_order_with_the_cursor_at_the_newest_version() -> None:
    hub = WatchHub(0)
    for rv, key in enumerate((WIDGETS, MAPS, WIDGETS, MAPS, WIDGETS), start=1):
        hub.publish(_event(rv, key))
    answer = hub.after(WIDGETS, 1, 0.0, 0)
    assert answer is not None
    assert [e.rv for e in answer[0]] == [3, 5] and answer[1] == 5


def test_dropping_and_closing_wake_every_watcher() -> None:
    hub = WatchHub(0)
    got: list[object] = []
    waiters = [
        threading.Thread(target=lambda k=k: got.append(hub.after(k, 0, 5.0, 0))) for k in (WIDGETS, MAPS)
    ]
    for w in waiters:
        w.start()
    time.sleep(0.1)
    hub.drop_all()
    for w in waiters:
        w.join(2)
    assert got == [None, None]
    hub.close()
    assert hub.after(WIDGETS, 0, 5.0, hub.drops) is None


def test_a_watch_line_made_from_the_stored_json_is_the_line_of_the_object() -> None:
    from mnp.local.apiserver.watchstream import _line, _wrap

    obj = {"metadata": {"name": 'é\u2028"x"', "labels": {"a": "b"}}, "spec": {"n": 1.5, "t": True, "z": None}}
    body = json.dumps(obj, separators=(",", ":")).encode()
    for kind in ("ADDED", "MODIFIED", "DELETED"):
        assert _wrap(kind, body) == _line(kind, obj)
