"""The informer (mnp.kube.watch) against the real local API server and its fault switches: ordered
events, resume after dropped watches, relist after 410 Gone with synthetic events for what changed
meanwhile, reconnection to a restarted server, and selectors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mnp.kube.client import Client, Resource
from mnp.kube.watch import EventType, Informer, WatchEvent
from tests.apiserver.conftest import running_apiserver
from tests.kube.conftest import LocalServer, configmap, eventually, faults, run, unique

CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")
FAST: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.5}


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take(queue: asyncio.Queue[WatchEvent], n: int, timeout: float = 10.0) -> list[tuple[str, str]]:
    """The next n events as (type, name)."""
    got = []
    for _ in range(n):
        event = await asyncio.wait_for(queue.get(), timeout)
        got.append((event.type.value, event.obj["metadata"]["name"]))
    return got


def names(informer: Informer) -> list[str]:
    return [o["metadata"]["name"] for o in informer.items()]


async def listed_names(client: Client, ns: str) -> list[str]:
    return [o["metadata"]["name"] for o in (await client.list(CONFIGMAPS, ns)).items]


def test_an_informer_delivers_creates_updates_and_deletes_in_order(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await client.create(CONFIGMAPS, configmap("before", ns))
        informer = Informer(client, CONFIGMAPS, namespace=ns, **FAST)
        queue = informer.subscribe()
        seen: list[WatchEvent] = []

        async def handler(event: WatchEvent) -> None:
            seen.append(event)

        informer.add_handler(handler)
        async with running(informer):
            assert await take(queue, 1) == [("ADDED", "before")]
            await client.create(CONFIGMAPS, configmap("a", ns, x="1"))
            await client.patch(CONFIGMAPS, "a", {"data": {"x": "2"}}, ns)
            await client.delete(CONFIGMAPS, "a", ns)
            await client.create(CONFIGMAPS, configmap("b", ns))
            assert await take(queue, 4) == [
                ("ADDED", "a"),
                ("MODIFIED", "a"),
                ("DELETED", "a"),
                ("ADDED", "b"),
            ]
            assert names(informer) == ["b", "before"]
            assert informer.get(ns, "b") is not None and informer.get(ns, "a") is None
            modified = seen[2]
            assert modified.old is not None and modified.old["data"] == {"x": "1"}
            assert modified.obj["data"] == {"x": "2"}
            assert seen[3].type is EventType.DELETED and seen[3].old is not None
            assert int(informer.resource_version) >= int(seen[-1].obj["metadata"]["resourceVersion"])

            late = informer.subscribe()  # a late subscriber starts from the cache
            assert await take(late, 2) == [("ADDED", "b"), ("ADDED", "before")]

    run(server, body)


def test_a_failing_handler_does_not_stop_the_informer(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        informer = Informer(client, CONFIGMAPS, namespace=ns, **FAST)

        async def broken(event: WatchEvent) -> None:
            raise RuntimeError("handler bug")

        informer.add_handler(broken)
        queue = informer.subscribe()
        async with running(informer):
            await client.create(CONFIGMAPS, configmap("a", ns))
            await client.create(CONFIGMAPS, configmap("b", ns))
            assert await take(queue, 2) == [("ADDED", "a"), ("ADDED", "b")]

    run(server, body)


def test_dropped_watches_resume_without_duplicates_or_loss(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        informer = Informer(client, CONFIGMAPS, namespace=ns, **FAST)
        queue = informer.subscribe()
        expected = []
        async with running(informer):
            for round in range(6):
                for i in range(4):
                    name = f"r{round}-{i}"
                    await client.create(CONFIGMAPS, configmap(name, ns))
                    expected.append(("ADDED", name))
                await faults(client, {"dropWatches": True})
            await client.create(CONFIGMAPS, configmap("last", ns))
            expected.append(("ADDED", "last"))
            assert await take(queue, len(expected)) == expected
            await asyncio.sleep(0.3)
            assert queue.empty(), "duplicate events after a resumed watch"
            assert names(informer) == await listed_names(client, ns)
            assert informer.relists == 0  # resumed from the last version, never relisted

    run(server, body)


def test_a_relist_after_410_delivers_what_changed_while_disconnected(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        for name in ("a", "b", "c"):
            await client.create(CONFIGMAPS, configmap(name, ns, v="1"))
        informer = Informer(client, CONFIGMAPS, namespace=ns, **FAST)
        queue = informer.subscribe()
        async with running(informer):
            assert await take(queue, 3) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
            try:
                await faults(client, {"watchGone": True, "dropWatches": True})
                await eventually(lambda: _value(informer.relists >= 1), what="a relist after 410")
                await client.delete(CONFIGMAPS, "b", ns)
                await client.patch(CONFIGMAPS, "c", {"data": {"v": "2"}}, ns)
                await client.create(CONFIGMAPS, configmap("d", ns))
                got = await take(queue, 3)
                assert sorted(got) == [("ADDED", "d"), ("DELETED", "b"), ("MODIFIED", "c")]
                # Every watch keeps expiring: the informer backs off (0.05 s doubling to 0.5 s) instead
                # of relisting in a tight loop; a loaded machine can only make the count smaller.
                relists = informer.relists
                await asyncio.sleep(1.5)
                assert informer.relists - relists < 20
                assert queue.empty(), "a relist of unchanged objects delivered events"
            finally:
                await faults(client, {"watchGone": False})
            await client.create(CONFIGMAPS, configmap("e", ns))
            assert await take(queue, 1) == [("ADDED", "e")]
            assert names(informer) == ["a", "c", "d", "e"] == await listed_names(client, ns)
            assert informer.get(ns, "c")["data"] == {"v": "2"}  # type: ignore[index]

    run(server, body)


def test_selectors_limit_the_cache_and_a_label_change_moves_objects_in_and_out(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        by_label = Informer(client, CONFIGMAPS, namespace=ns, label_selector="app=web", **FAST)
        by_name = Informer(
            client, CONFIGMAPS, field_selector=f"metadata.namespace={ns},metadata.name=x", **FAST
        )
        labelled, named = by_label.subscribe(), by_name.subscribe()
        async with running(by_label), running(by_name):
            await client.create(CONFIGMAPS, configmap("x", ns, {"app": "db"}))
            await client.create(CONFIGMAPS, configmap("y", ns, {"app": "web"}))
            await client.patch(CONFIGMAPS, "x", {"metadata": {"labels": {"app": "web"}}}, ns)
            await client.patch(CONFIGMAPS, "y", {"metadata": {"labels": {"app": "db"}}}, ns)
            assert await take(labelled, 3) == [("ADDED", "y"), ("ADDED", "x"), ("DELETED", "y")]
            assert await take(named, 2) == [("ADDED", "x"), ("MODIFIED", "x")]
            assert names(by_label) == ["x"] and names(by_name) == ["x"]

    run(server, body)


@contextlib.asynccontextmanager
async def restartable(process: Any, prefix: str) -> AsyncIterator[tuple[Client, str]]:
    """A client of the restartable server `process` (short retries) and a fresh namespace."""
    async with await Client.from_kubeconfig(process.kubeconfig, retry_for=2.0, backoff_max=0.2) as client:
        ns = unique(prefix)
        await client.create(Resource("", "v1", "namespaces", False), {"metadata": {"name": ns}})
        yield client, ns


def test_an_informer_reconnects_to_a_restarted_server_and_converges() -> None:
    with running_apiserver() as process:

        async def main() -> None:
            async with restartable(process, "restart") as (client, ns):
                for name in ("a", "b"):
                    await client.create(CONFIGMAPS, configmap(name, ns))
                informer = Informer(client, CONFIGMAPS, namespace=ns, **FAST)
                queue = informer.subscribe()
                async with running(informer):
                    assert await take(queue, 2) == [("ADDED", "a"), ("ADDED", "b")]
                    await asyncio.to_thread(process.restart)
                    await client.delete(CONFIGMAPS, "a", ns)
                    await client.create(CONFIGMAPS, configmap("c", ns))
                    assert sorted(await take(queue, 2)) == [("ADDED", "c"), ("DELETED", "a")]
                    assert informer.reconnects + informer.relists >= 1
                    assert names(informer) == ["b", "c"] == await listed_names(client, ns)

        asyncio.run(main())


def test_after_an_outage_the_410_of_the_restarted_server_is_relisted_at_once_not_after_more_back_off() -> (
    None
):
    with running_apiserver() as process:

        async def main() -> None:
            async with restartable(process, "outage") as (client, ns):
                await client.create(CONFIGMAPS, configmap("a", ns))
                informer = Informer(client, CONFIGMAPS, namespace=ns, backoff_initial=0.05, backoff_max=2.0)
                backoffs: list[int] = []  # informer.relists at each back-off
                real_backoff = informer._backoff

                def recording(failures: int) -> float:
                    backoffs.append(informer.relists)
                    return real_backoff(failures)

                informer._backoff = recording  # type: ignore[method-assign]
                queue = informer.subscribe()
                async with running(informer):
                    assert await take(queue, 1) == [("ADDED", "a")]
                    # A write the informer does not see: the restarted server's oldest version is newer.
                    await client.create(CONFIGMAPS, configmap(unique("elsewhere"), "default"))
                    await asyncio.to_thread(process.kill)
                    await asyncio.sleep(1.5)  # watches fail, the back-off grows
                    await asyncio.to_thread(process.start)
                    await client.create(CONFIGMAPS, configmap("b", ns))
                    assert await take(queue, 1) == [("ADDED", "b")]
                    # The restarted server knows no old version: 410, relisted without a back-off.
                    assert informer.relists >= 1 and len(backoffs) >= 3, (informer.relists, backoffs)
                    assert max(backoffs) == 0, f"backed off after a 410 that ended an outage: {backoffs}"

        asyncio.run(main())


async def _value(v: Any) -> Any:
    return v
