"""kr8s (async API, the client under mnp/kube/) against `mnp local apiserver`.

Objects, a custom resource class made with `new_class`, short-name lookup through legacy discovery,
merge/JSON/status patches, selectors, `wait` and watches that the server keeps open (kr8s sends no
timeoutSeconds and no bookmarks request). Each test runs its own event loop and kr8s Api.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import ConfigMap, Namespace, Node, Pod, new_class

from tests.apiserver.conftest import (
    ApiServer,
    applied_status,
    crd_documents,
    install_crds,
    pod,
    python_client,
    ruleset,
    unique,
)

PodNetworkRuleset = new_class(
    kind="PodNetworkRuleset",
    version="mnp.dev/v1alpha1",
    namespaced=True,
    plural="podnetworkrulesets",
    asyncio=True,
)


@pytest.fixture(scope="module")
def server(module_apiserver: ApiServer) -> Iterator[ApiServer]:
    api = python_client(module_apiserver)
    install_crds(api, crd_documents())
    api.close()
    yield module_apiserver


def run(server: ApiServer, body: Callable[[Any, str], Awaitable[None]]) -> None:
    """Run body(api, namespace) in a fresh loop with a fresh kr8s Api and namespace."""
    ns = unique("kr")

    async def main() -> None:
        # A distinct namespace argument also keeps kr8s's per-loop Api cache from handing back another test's.
        api = await kr8s.asyncio.api(kubeconfig=str(server.kubeconfig), namespace=ns)
        await Namespace({"metadata": {"name": ns}}, api=api).create()
        await body(api, ns)
        # Watches that kr8s itself abandons (wait() returns from inside one) are finalized now, while
        # this loop runs, not in some later test where their close can only warn.
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())


async def take(
    events: AsyncIterator[tuple[str, Any]],
    until: Callable[[list[tuple[str, Any]]], bool],
    timeout: float = 10.0,
) -> list[tuple[str, dict[str, Any]]]:
    """Events (type, raw object) of a kr8s watch until `until(events)` holds; fails on timeout."""
    got: list[tuple[str, Any]] = []

    async def pump() -> None:
        try:
            async for kind, obj in events:
                got.append((kind, obj.raw))
                if until(got):
                    return
        finally:
            await events.aclose()  # in the task that iterated: httpx/anyio insist on it

    try:
        await asyncio.wait_for(pump(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"watch timed out after {timeout}s with {[(t, o['metadata']['name']) for t, o in got]}"
        ) from None
    return got


def test_version_and_namespaces(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        version = await api.version()
        assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
        names = [n.name async for n in api.get("namespaces")]
        assert {"default", ns} <= set(names)

    run(server, body)


def test_whoami_names_the_admin_user_through_token_review(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        # kr8s's whoami() posts a TokenReview (authentication.k8s.io/v1) for its own token.
        assert await api.whoami()

    run(server, body)


def test_pods_and_configmaps_create_get_list_patch_delete(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        p = Pod(pod("p1", ns, node="node-1"), api=api)
        await p.create()
        assert p.metadata.uid and p.metadata.resourceVersion
        await Pod(pod("p2", ns, node="node-2", labels={"app": "db"}), api=api).create()
        got = await Pod.get("p1", namespace=ns, api=api)
        assert got.spec.nodeName == "node-1" and [c.name for c in got.spec.containers] == ["web", "sidecar"]
        by_label = [x.name async for x in api.get("pods", namespace=ns, label_selector={"app": "db"})]
        assert by_label == ["p2"]
        by_field = [
            x.name async for x in api.get("pods", namespace=ns, field_selector="spec.nodeName=node-1")
        ]
        assert by_field == ["p1"]
        await got.label({"mnp.dev/x": "1"})
        await got.patch({"metadata": {"annotations": {"a": "b"}}})
        await got.refresh()
        assert got.labels["mnp.dev/x"] == "1" and got.annotations["a"] == "b"
        cm = ConfigMap({"metadata": {"name": "cm", "namespace": ns}, "data": {"k": "v"}}, api=api)
        await cm.create()
        await cm.patch([{"op": "replace", "path": "/data/k", "value": "w"}], type="json")
        assert (await ConfigMap.get("cm", namespace=ns, api=api)).data == {"k": "w"}
        await cm.delete()
        assert not await cm.exists()
        await got.delete()  # bound to a node: Terminating until its kubelet (played here) finishes
        await got.refresh()
        assert got.metadata.deletionTimestamp
        await got.delete(force=True)
        await got.wait("delete", timeout=10)

    run(server, body)


def test_a_custom_resource_class_creates_patches_and_patches_status(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        r = PodNetworkRuleset(ruleset("r1", ns), api=api)
        await r.create()
        assert r.metadata.generation == 1 and r.metadata.uid
        await r.patch({"spec": {"compacted": True}})
        assert r.spec.compacted is True and r.metadata.generation == 2
        await r.patch([{"op": "replace", "path": "/spec/node", "value": "node-2"}], type="json")
        assert r.spec.node == "node-2" and r.metadata.generation == 3
        await r.patch(applied_status(generation=3), subresource="status")
        assert r.status.conditions[0].type == "Applied" and r.metadata.generation == 3
        fetched = await PodNetworkRuleset.get("r1", namespace=ns, api=api)
        assert isinstance(fetched, PodNetworkRuleset)
        assert fetched.status.rules == 14 and fetched.spec.node == "node-2"
        await fetched.wait("condition=Applied", timeout=10)
        await fetched.delete()
        assert not await fetched.exists()

    run(server, body)


def test_lookup_by_short_name_plural_and_kind(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        await PodNetworkRuleset(ruleset("a", ns), api=api).create()
        await PodNetworkRuleset(ruleset("b", ns, node="node-2"), api=api).create()
        kind, plural, namespaced = await api.lookup_kind("pnr")
        assert (plural, namespaced) == ("podnetworkrulesets", True) and kind.endswith("mnp.dev/v1alpha1")
        for name in ("pnr", "podnetworkrulesets", "podnetworkrulesets.mnp.dev", "PodNetworkRuleset"):
            got = [o async for o in api.get(name, namespace=ns)]
            assert sorted(o.name for o in got) == ["a", "b"], name
            assert all(isinstance(o, PodNetworkRuleset) for o in got), name
        node2 = [
            o.name async for o in api.get("pnr", namespace=ns, label_selector={"mnp.dev/node": "node-2"})
        ]
        assert node2 == ["b"]
        # kr8s repeats the name term when asked for one object by name with a field selector too.
        one = [o.name async for o in api.get("pnr", "a", namespace=ns, field_selector="metadata.name=a")]
        assert one == ["a"]
        policies = [o async for o in api.get("multi-policy", namespace=ns)]
        assert policies == []

    run(server, body)


def test_get_follows_continue_past_its_page_size_of_100(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        for i in range(105):
            await ConfigMap(
                {"metadata": {"name": f"cm-{i:03d}", "namespace": ns, "labels": {"bulk": "1"}}}, api=api
            ).create()
        got = [o.name async for o in api.get("configmaps", namespace=ns, label_selector={"bulk": "1"})]
        assert sorted(got) == [f"cm-{i:03d}" for i in range(105)]

    run(server, body)


def test_all_namespaces_list_and_watch_with_a_node_label(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        other = unique("kr-other")
        await Namespace({"metadata": {"name": other}}, api=api).create()
        node = unique("node")
        anchor = PodNetworkRuleset(ruleset("anchor", ns, node=node), api=api)
        await anchor.create()
        since = anchor.metadata.resourceVersion
        await PodNetworkRuleset(ruleset("here", other, node=node), api=api).create()
        await PodNetworkRuleset(ruleset("elsewhere", other, node="node-x"), api=api).create()
        listed = [
            (o.namespace, o.name)
            async for o in api.get("pnr", namespace=kr8s.ALL, label_selector={"mnp.dev/node": node})
        ]
        assert sorted(listed) == sorted([(ns, "anchor"), (other, "here")])
        events = api.watch("pnr", namespace=kr8s.ALL, label_selector=f"mnp.dev/node={node}", since=since)
        got = await take(events, lambda ev: len(ev) >= 1)
        assert [(t, o["metadata"]["namespace"], o["metadata"]["name"]) for t, o in got] == [
            ("ADDED", other, "here")
        ]

    run(server, body)


def test_a_lease_class_renews_with_a_resource_version_precondition(server: ApiServer) -> None:
    Lease = new_class(kind="Lease", version="coordination.k8s.io/v1", namespaced=True, asyncio=True)

    async def body(api: Any, ns: str) -> None:
        lease = Lease(
            {
                "metadata": {"name": "mnp-controller", "namespace": ns},
                "spec": {
                    "holderIdentity": "a",
                    "leaseDurationSeconds": 15,
                    "renewTime": "2026-11-25T12:00:00.000000Z",
                },
            },
            api=api,
        )
        await lease.create()
        seen = lease.metadata.resourceVersion
        await lease.patch(
            {"metadata": {"resourceVersion": seen}, "spec": {"renewTime": "2026-11-25T12:00:05.000000Z"}}
        )
        assert lease.spec.renewTime == "2026-11-25T12:00:05.000000Z"
        rival = await Lease.get("mnp-controller", namespace=ns, api=api)
        with pytest.raises(kr8s.ServerError) as exc:
            await rival.patch({"metadata": {"resourceVersion": seen}, "spec": {"holderIdentity": "b"}})
        assert exc.value.response is not None and exc.value.response.status_code == 409
        await rival.refresh()
        assert rival.spec.holderIdentity == "a"

    run(server, body)


def test_cluster_scoped_nodes_create_cordon_status_and_delete(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        name = unique("node")
        node = Node({"metadata": {"name": name, "labels": {"mnp.dev/test": ns}}}, api=api)
        await node.create()
        assert node.metadata.uid and "namespace" not in node.metadata
        await node.cordon()
        assert node.spec.unschedulable is True
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "ok",
            "lastHeartbeatTime": "2026-11-25T12:00:00Z",
            "lastTransitionTime": "2026-11-25T12:00:00Z",
        }
        await node.patch(
            {
                "status": {
                    "conditions": [ready],
                    "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                }
            },
            subresource="status",
        )
        fetched = await Node.get(name, api=api)
        assert fetched.status.conditions[0].type == "Ready" and fetched.spec.unschedulable is True
        listed = [n.name async for n in api.get("nodes", label_selector={"mnp.dev/test": ns})]
        assert listed == [name]
        await fetched.delete()
        assert not await fetched.exists()

    run(server, body)


def test_errors_surface_as_kr8s_exceptions(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        with pytest.raises(kr8s.NotFoundError):
            await PodNetworkRuleset.get("missing", namespace=ns, api=api, timeout=1)
        r = PodNetworkRuleset(ruleset("dup", ns), api=api)
        await r.create()
        with pytest.raises(kr8s.ServerError) as exc:
            await PodNetworkRuleset(ruleset("dup", ns), api=api).create()
        assert exc.value.response is not None and exc.value.response.status_code == 409
        assert exc.value.status["reason"] == "AlreadyExists"
        bad = ruleset("bad", ns)
        bad["spec"]["node"] = "Not_A_Node"
        with pytest.raises(kr8s.ServerError) as exc:
            await PodNetworkRuleset(bad, api=api).create()
        assert exc.value.response is not None and exc.value.response.status_code == 422

    run(server, body)


def test_watch_from_a_version_sees_every_change_in_order(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        anchor = PodNetworkRuleset(ruleset("anchor", ns), api=api)
        await anchor.create()
        since = anchor.metadata.resourceVersion
        r = PodNetworkRuleset(ruleset("w", ns), api=api)
        await r.create()
        await r.patch({"metadata": {"labels": {"x": "1"}}})
        await r.patch(applied_status(), subresource="status")
        await r.delete()
        got = await take(api.watch("pnr", namespace=ns, since=since), lambda ev: ev[-1][0] == "DELETED")
        assert [(t, o["metadata"]["name"]) for t, o in got] == [
            ("ADDED", "w"),
            ("MODIFIED", "w"),
            ("MODIFIED", "w"),
            ("DELETED", "w"),
        ]
        versions = [int(o["metadata"]["resourceVersion"]) for _, o in got]
        assert versions == sorted(set(versions)) and versions[0] > int(since)
        assert got[2][1]["status"]["conditions"][0]["status"] == "True"
        assert all(t != "BOOKMARK" for t, _ in got)

    run(server, body)


def test_watch_without_a_version_lists_then_follows_live_changes(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        await PodNetworkRuleset(ruleset("old", ns), api=api).create()
        events = api.watch("pnr", namespace=ns, label_selector={"mnp.dev/node": "node-1"})

        connected = asyncio.Event()

        async def write_later() -> None:
            await connected.wait()  # the synthetic ADDED of "old" arrived: the watch is open
            await PodNetworkRuleset(ruleset("new", ns), api=api).create()
            await PodNetworkRuleset(ruleset("elsewhere", ns, node="node-2"), api=api).create()
            moved = await PodNetworkRuleset.get("old", namespace=ns, api=api)
            await moved.patch({"metadata": {"labels": {"mnp.dev/node": "node-2"}}})

        writer = asyncio.create_task(write_later())
        got = await take(events, lambda ev: connected.set() or ev[-1][0] == "DELETED")
        await writer
        assert [(t, o["metadata"]["name"]) for t, o in got] == [
            ("ADDED", "old"),
            ("ADDED", "new"),
            ("DELETED", "old"),
        ], [
            (t, o["metadata"]["name"], o["metadata"]["resourceVersion"], o["metadata"]["labels"])
            for t, o in got
        ]

    run(server, body)


def test_object_wait_returns_when_the_status_condition_turns_true(server: ApiServer) -> None:
    async def body(api: Any, ns: str) -> None:
        r = PodNetworkRuleset(ruleset("wait", ns), api=api)
        await r.create()
        await r.patch(applied_status("False"), subresource="status")

        async def apply_later() -> None:
            await asyncio.sleep(0.5)
            await r.patch(applied_status("True"), subresource="status")

        later = asyncio.create_task(apply_later())
        waiter = await PodNetworkRuleset.get("wait", namespace=ns, api=api)
        await waiter.wait("condition=Applied=True", timeout=10)
        await later
        assert waiter.status.conditions[0].status == "True"

    run(server, body)
