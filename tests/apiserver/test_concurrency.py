"""Many writers and watchers at once: no watch event is out of order, missed or duplicated.

Writer threads (each with its own `kubernetes` client) create, patch, relabel, status-patch, delete
and fight over shared objects with optimistic concurrency while watchers started at different points
(from the empty start, from a mid-run list, from "" with synthetic ADDEDs, with bookmarks, and one kr8s
watcher) follow the namespace. Every stream must be in resourceVersion order without duplicates and
replay to exactly the final list. A crash during writes must lose no acknowledged write.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import kr8s.asyncio
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.apiserver.conftest import (
    PNR_GROUP,
    PNR_PLURAL,
    PNR_VERSION,
    ApiServer,
    applied_status,
    crd_documents,
    install_crds,
    python_client,
    ruleset,
)

PNR = (PNR_GROUP, PNR_VERSION)
NS = "conc"
WRITERS = 4
ROUNDS = 16  # per writer and phase; each round is 4-5 writes
SENTINEL = "zz-end"


@dataclass
class Stream:
    """What one watcher saw: an optional initial state, then events."""

    name: str
    initial: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bookmarks: list[int] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    selector: str | None = None  # "key=value" label selector this watcher uses, if any
    resumes: int = 0

    def wants(self, obj: dict[str, Any]) -> bool:
        if self.selector is None:
            return True
        key, value = self.selector.split("=")
        return (obj["metadata"].get("labels") or {}).get(key) == value


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def python_watcher(
    server: ApiServer, stream: Stream, *, cluster_wide: bool = False, **kwargs: Any
) -> threading.Thread:
    def follow() -> None:
        api = python_client(server)
        w = watch.Watch()
        co = client.CustomObjectsApi(api)
        # The agent's pattern: every namespace, its own node's label.
        func, args = (
            (co.list_cluster_custom_object, PNR)
            if cluster_wide
            else (co.list_namespaced_custom_object, (*PNR, NS))
        )
        if stream.selector:
            kwargs["label_selector"] = stream.selector
        try:
            for e in w.stream(func, *args, PNR_PLURAL, _request_timeout=60, **kwargs):
                if e["type"] == "BOOKMARK":
                    stream.bookmarks.append(rv(e["raw_object"]))
                    continue
                stream.events.append((e["type"], e["raw_object"]))
                if e["type"] == "ADDED" and e["raw_object"]["metadata"]["name"] == SENTINEL:
                    w.stop()
                    break
        except BaseException as exc:  # reported by the test, not lost in the thread
            stream.error = exc
        finally:
            stream.done.set()
            api.close()

    t = threading.Thread(target=follow, name=stream.name, daemon=True)
    t.start()
    return t


def kr8s_watcher(server: ApiServer, stream: Stream, since: str) -> threading.Thread:
    async def follow() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(server.kubeconfig), namespace=NS)
        # async_watch is what api.watch wraps; closing it directly ends its HTTP stream in this task
        # (closing the wrapper leaves the inner generator to the loop's shutdown, in another task).
        last = since
        async with asyncio.timeout(90):
            while (
                True
            ):  # kr8s ends a watch the server closes; resume from the last version seen, as mnp/kube does
                events = api.async_watch("pnr", namespace=NS, since=last)
                try:
                    async for kind, obj in events:
                        stream.events.append((kind, obj.raw))
                        last = obj.metadata.resourceVersion
                        if kind == "ADDED" and obj.name == SENTINEL:
                            return
                finally:
                    await events.aclose()
                stream.resumes += 1

    def run() -> None:
        try:
            asyncio.run(follow())
        except BaseException as exc:
            stream.error = exc
        finally:
            stream.done.set()

    t = threading.Thread(target=run, name=stream.name, daemon=True)
    t.start()
    return t


class Writer:
    """One writer thread's workload; records the resourceVersion of every acknowledged write."""

    def __init__(self, server: ApiServer, index: int, acked: list[int], lock: threading.Lock) -> None:
        self.api = python_client(server)
        self.co = client.CustomObjectsApi(self.api)
        self.index = index
        self.acked = acked
        self.lock = lock
        self.conflicts = 0
        self.error: BaseException | None = None

    def ack(self, obj: dict[str, Any]) -> None:
        with self.lock:
            self.acked.append(rv(obj))

    def phase(self, phase: int) -> None:
        co, i = self.co, self.index
        for j in range(ROUNDS):
            name = f"w{i}-{phase}-{j}"
            self.ack(co.create_namespaced_custom_object(*PNR, NS, PNR_PLURAL, ruleset(name, NS)))
            self.ack(
                co.patch_namespaced_custom_object(
                    *PNR, NS, PNR_PLURAL, name, {"spec": {"compacted": j % 2 == 0}}
                )
            )
            self.ack(
                co.patch_namespaced_custom_object_status(*PNR, NS, PNR_PLURAL, name, applied_status(rules=j))
            )
            if j % 3 == 0:
                self.ack(
                    co.patch_namespaced_custom_object(
                        *PNR, NS, PNR_PLURAL, name, {"metadata": {"labels": {"mnp.dev/node": "node-2"}}}
                    )
                )
            if j % 4 == 1:
                co.delete_namespaced_custom_object(*PNR, NS, PNR_PLURAL, name)
            self.bump_shared(f"shared-{j % 3}")

    def bump_shared(self, name: str) -> None:
        """Read-modify-write with a resourceVersion precondition, retried on 409 like a controller."""
        for _ in range(50):
            current = self.co.get_namespaced_custom_object(*PNR, NS, PNR_PLURAL, name)
            policies = current["spec"]["policies"]
            current["spec"]["policies"] = [*policies, f"default/w{self.index}-{len(policies)}"]
            try:
                self.ack(self.co.replace_namespaced_custom_object(*PNR, NS, PNR_PLURAL, name, current))
                return
            except ApiException as e:
                if e.status != 409:
                    raise
                self.conflicts += 1
        raise AssertionError(f"{name}: 50 conflicts in a row")

    def run(self, start: threading.Barrier, pause: threading.Barrier, resume: threading.Barrier) -> None:
        try:
            start.wait()
            self.phase(0)
            pause.wait()
            resume.wait()
            self.phase(1)
        except BaseException as exc:
            self.error = exc
            for b in (pause, resume):
                b.abort()

    def run_through(self) -> None:
        try:
            self.phase(0)
            self.phase(1)
        except BaseException as exc:
            self.error = exc


def replay(stream: Stream) -> dict[str, dict[str, Any]]:
    state = dict(stream.initial)
    for kind, obj in stream.events:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            assert name in state, f"{stream.name}: DELETED {name} that it never saw"
            del state[name]
        else:
            assert kind in ("ADDED", "MODIFIED"), f"{stream.name}: unexpected event {kind}: {obj}"
            assert (kind == "ADDED") == (name not in state), f"{stream.name}: {kind} {name} at {rv(obj)}"
            state[name] = obj
    return state


def essence(objs: dict[str, dict[str, Any]]) -> dict[str, tuple[int, Any, Any, Any]]:
    return {n: (rv(o), o["metadata"].get("labels"), o["spec"], o.get("status")) for n, o in objs.items()}


# Closing kr8s's watch mid-stream leaves httpx's inner line iterators to the event loop's finalizer,
# which closes them from another task and anyio complains; client teardown noise, not server behaviour.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_writers_and_watchers_agree_on_every_event(apiserver: ApiServer) -> None:
    api = python_client(apiserver)
    install_crds(api, crd_documents())
    core, co = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    for k in range(3):
        co.create_namespaced_custom_object(*PNR, NS, PNR_PLURAL, ruleset(f"shared-{k}", NS))
    start_list = co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)
    start_rv = start_list["metadata"]["resourceVersion"]
    start_state = {o["metadata"]["name"]: o for o in start_list["items"]}

    streams = [
        Stream("from-start", initial=dict(start_state)),
        Stream("from-start-bookmarks", initial=dict(start_state)),
        Stream("kr8s-from-start", initial=dict(start_state)),
        Stream("node-2-all-namespaces", selector="mnp.dev/node=node-2"),
    ]
    threads = [
        python_watcher(apiserver, streams[0], resource_version=start_rv),
        python_watcher(apiserver, streams[1], resource_version=start_rv, allow_watch_bookmarks=True),
        kr8s_watcher(apiserver, streams[2], since=start_rv),
        python_watcher(apiserver, streams[3], resource_version=start_rv, cluster_wide=True),
    ]

    acked: list[int] = []
    lock = threading.Lock()
    writers = [Writer(apiserver, i, acked, lock) for i in range(WRITERS)]
    start, pause, resume = (threading.Barrier(WRITERS + 1) for _ in range(3))
    writer_threads = [
        threading.Thread(target=w.run, args=(start, pause, resume), daemon=True) for w in writers
    ]
    for t in writer_threads:
        t.start()
    time.sleep(0.3)  # let the watchers connect while nothing is written yet
    started = time.monotonic()
    try:
        start.wait(timeout=30)
        pause.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise AssertionError(f"writers failed: {[repr(w.error) for w in writers if w.error]}") from None

    # Writers are paused: a list now is exact, and a watch from "" must start with exactly its items.
    mid_list = co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)
    mid_state = {o["metadata"]["name"]: o for o in mid_list["items"]}
    from_list = Stream("from-mid-list", initial=dict(mid_state))
    synthetic = Stream("from-empty-version")
    threads.append(
        python_watcher(apiserver, from_list, resource_version=mid_list["metadata"]["resourceVersion"])
    )
    threads.append(python_watcher(apiserver, synthetic))
    deadline = time.monotonic() + 10
    while len(synthetic.events) < len(mid_state) and time.monotonic() < deadline and synthetic.error is None:
        time.sleep(0.02)
    initial_burst = list(synthetic.events)
    assert len(initial_burst) == len(mid_state), f"synthetic ADDEDs: {len(initial_burst)} of {len(mid_state)}"
    assert all(kind == "ADDED" for kind, _ in initial_burst)
    assert essence({o["metadata"]["name"]: o for _, o in initial_burst}) == essence(mid_state)
    resume.wait(timeout=10)
    for t in writer_threads:
        t.join(60)
    elapsed = time.monotonic() - started
    for w in writers:
        assert w.error is None, f"writer {w.index}: {w.error!r}"
    co.create_namespaced_custom_object(*PNR, NS, PNR_PLURAL, ruleset(SENTINEL, NS, node="node-2"))
    final_list = co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)
    final = {o["metadata"]["name"]: o for o in final_list["items"]}
    for s in [*streams, from_list, synthetic]:
        assert s.done.wait(30), (
            f"{s.name}: never saw the sentinel; last events {[(k, o['metadata']['name'], rv(o)) for k, o in s.events[-5:]]}"
        )
    for t in threads:
        t.join(5)

    for s in [*streams, from_list, synthetic]:
        assert s.error is None, f"{s.name}: {s.error!r}"
        assert s.events and s.events[-1][0] == "ADDED" and s.events[-1][1]["metadata"]["name"] == SENTINEL, (
            f"{s.name}: the stream ended before the sentinel"
        )
        live = s.events[len(mid_state) :] if s is synthetic else s.events
        versions = [rv(o) for _, o in live]
        floor = int((mid_list if s in (from_list, synthetic) else start_list)["metadata"]["resourceVersion"])
        assert all(v > floor for v in versions), f"{s.name}: an event at or before the watched version"
        out_of_order = [(a, b) for a, b in zip(versions, versions[1:], strict=False) if b <= a]
        assert not out_of_order, f"{s.name}: events out of order or duplicated: {out_of_order[:5]}"
        if s is synthetic:
            s.initial = {o["metadata"]["name"]: o for _, o in initial_burst}
            s.events = live
        wanted = {n: o for n, o in final.items() if s.wants(o)}
        assert essence(replay(s)) == essence(wanted), f"{s.name}: replay differs from the final list"
        assert s.bookmarks == sorted(s.bookmarks), f"{s.name}: bookmarks go back in time"

    moved = [(k, o["metadata"]["name"]) for k, o in streams[3].events]
    assert ("DELETED" in {k for k, _ in moved}) and len([k for k, _ in moved if k == "ADDED"]) > 1, moved

    # Nothing acknowledged is missing from a stream that watched from the start.
    seen = {rv(o) for _, o in streams[0].events}
    missing = sorted(set(acked) - seen)
    assert not missing, f"acknowledged writes with no watch event: {missing[:10]}"
    conflicts = sum(w.conflicts for w in writers)
    assert len(acked) >= WRITERS * ROUNDS * 2 * 4, (len(acked), elapsed, conflicts)


def test_a_crash_during_concurrent_writes_loses_no_acknowledged_write(apiserver: ApiServer) -> None:
    api = python_client(apiserver)
    install_crds(api, crd_documents())
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def write(index: int) -> None:
        co = client.CustomObjectsApi(python_client(apiserver))
        for j in range(10_000):
            if stop.is_set():
                return
            name = f"c{index}-{j}"
            try:
                out = co.create_namespaced_custom_object(
                    *PNR, NS, PNR_PLURAL, ruleset(name, NS), _request_timeout=5
                )
            except Exception:
                return  # the crash: this write was never acknowledged
            with lock:
                acked[name] = rv(out)

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    apiserver.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 10, f"only {len(acked)} writes acknowledged before the crash"
    apiserver.start()
    co = client.CustomObjectsApi(python_client(apiserver))
    stored = {
        o["metadata"]["name"]: rv(o) for o in co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)["items"]
    }
    lost = {n: v for n, v in acked.items() if stored.get(n) != v}
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged creates lost or changed: {sorted(lost.items())[:5]}"
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_watchers_resume_without_gaps_when_the_server_drops_every_watch_mid_write(
    apiserver: ApiServer,
) -> None:
    """The controller's and agent's loops: a dropped watch resumes from its last version (the Python
    client does it by itself, kr8s by our loop); streams stay ordered, complete and duplicate-free."""
    api = python_client(apiserver)
    install_crds(api, crd_documents())
    core, co = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    for k in range(3):
        co.create_namespaced_custom_object(*PNR, NS, PNR_PLURAL, ruleset(f"shared-{k}", NS))
    start_list = co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)
    start_rv = start_list["metadata"]["resourceVersion"]
    start_state = {o["metadata"]["name"]: o for o in start_list["items"]}
    streams = [Stream(f"python-{i}", initial=dict(start_state)) for i in range(3)]
    streams.append(Stream("kr8s", initial=dict(start_state)))
    threads = [python_watcher(apiserver, s, resource_version=start_rv) for s in streams[:3]]
    threads.append(kr8s_watcher(apiserver, streams[3], since=start_rv))
    acked: list[int] = []
    lock = threading.Lock()
    writers = [Writer(apiserver, i, acked, lock) for i in range(3)]
    time.sleep(0.3)
    writer_threads = [threading.Thread(target=w.run_through, daemon=True) for w in writers]
    for t in writer_threads:
        t.start()
    drops = 0
    while any(t.is_alive() for t in writer_threads):
        time.sleep(0.25)
        apiserver.faults({"dropWatches": True})
        drops += 1
    for w in writers:
        assert w.error is None, f"writer {w.index}: {w.error!r}"
    assert drops >= 3, f"writers finished before the watches could be dropped ({drops} drops)"
    co.create_namespaced_custom_object(*PNR, NS, PNR_PLURAL, ruleset(SENTINEL, NS))
    final = {
        o["metadata"]["name"]: o for o in co.list_namespaced_custom_object(*PNR, NS, PNR_PLURAL)["items"]
    }
    for s in streams:
        assert s.done.wait(30), f"{s.name}: never saw the sentinel"
    for t in threads:
        t.join(5)
    assert streams[3].resumes >= 1, "the kr8s watch was never dropped"
    for s in streams:
        assert s.error is None, f"{s.name}: {s.error!r}"
        versions = [rv(o) for _, o in s.events]
        out_of_order = [(a, b) for a, b in zip(versions, versions[1:], strict=False) if b <= a]
        assert not out_of_order, (
            f"{s.name}: events out of order or duplicated across a resume: {out_of_order[:5]}"
        )
        assert essence(replay(s)) == essence(final), f"{s.name}: replay differs from the final list"
        missing = sorted(set(acked) - set(versions))
        assert not missing, f"{s.name}: acknowledged writes lost across a resume: {missing[:10]}"
