"""EventRecorder (mnp.kube.events) on the local API server: Events name the object and the component,
repeats are counted on one Event, new messages make new Events, and recording never raises."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mnp.kube.client import EVENTS, NODES, Client, Resource
from mnp.kube.events import WARNING, EventRecorder
from tests.kube.conftest import LocalServer, configmap, run

CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")


async def events_about(client: Client, ns: str, name: str) -> list[dict[str, Any]]:
    listed = await client.list(EVENTS, ns, field_selector=f"involvedObject.name={name}")
    return sorted(listed.items, key=lambda e: e["metadata"]["creationTimestamp"] + e["metadata"]["name"])


def test_an_event_names_the_object_the_component_and_the_host(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        cm = await client.create(CONFIGMAPS, configmap("web", ns))
        recorder = EventRecorder(client, "mnp-agent", host="node-1")
        event = await recorder.record(cm, WARNING, "NftError", "nft refused the transaction")
        assert event is not None
        [stored] = await events_about(client, ns, "web")
        assert stored["involvedObject"] == {
            "kind": "ConfigMap",
            "namespace": ns,
            "name": "web",
            "uid": cm["metadata"]["uid"],
            "apiVersion": "v1",
            "resourceVersion": cm["metadata"]["resourceVersion"],
        }
        assert stored["source"] == {"component": "mnp-agent", "host": "node-1"}
        assert (stored["type"], stored["reason"], stored["message"], stored["count"]) == (
            "Warning",
            "NftError",
            "nft refused the transaction",
            1,
        )
        assert stored["firstTimestamp"] == stored["lastTimestamp"]

    run(server, body)


def test_repeats_of_one_event_are_counted_on_one_object(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        cm = await client.create(CONFIGMAPS, configmap("web", ns))
        recorder = EventRecorder(client, "mnp-controller")
        for _ in range(3):
            await recorder.record(cm, "Normal", "Compiled", "3 rulesets written")
        await asyncio.sleep(1.1)  # lastTimestamp has whole seconds
        last = await recorder.record(cm, "Normal", "Compiled", "3 rulesets written")
        assert last is not None and last["count"] == 4
        [stored] = await events_about(client, ns, "web")
        assert stored["count"] == 4
        assert stored["lastTimestamp"] > stored["firstTimestamp"]

        await recorder.record(cm, "Normal", "Compiled", "4 rulesets written")
        await recorder.record(cm, WARNING, "Compiled", "4 rulesets written")
        messages = [(e["type"], e["message"], e["count"]) for e in await events_about(client, ns, "web")]
        assert sorted(messages) == [
            ("Normal", "3 rulesets written", 4),
            ("Normal", "4 rulesets written", 1),
            ("Warning", "4 rulesets written", 1),
        ]

    run(server, body)


def test_a_deleted_event_is_recreated_on_the_next_repeat(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        cm = await client.create(CONFIGMAPS, configmap("web", ns))
        recorder = EventRecorder(client, "mnp-controller")
        first = await recorder.record(cm, "Normal", "Synced", "ok")
        assert first is not None
        await client.delete(EVENTS, first["metadata"]["name"], ns)
        again = await recorder.record(cm, "Normal", "Synced", "ok")
        assert again is not None and again["count"] == 1
        assert again["metadata"]["name"] != first["metadata"]["name"]

    run(server, body)


def test_events_about_cluster_scoped_objects_go_to_the_default_namespace(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"{ns}-node"}}
        created = await client.create(NODES, node)
        recorder = EventRecorder(client, "mnp-kubelet", host=f"{ns}-node")
        event = await recorder.record(created, "Normal", "NodeReady", "node is ready")
        assert event is not None and event["metadata"]["namespace"] == "default"
        assert [e["reason"] for e in await events_about(client, "default", f"{ns}-node")] == ["NodeReady"]

    run(server, body)


def test_recording_never_raises_when_the_server_refuses(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        ghost = configmap("ghost", "no-such-namespace")
        recorder = EventRecorder(client, "mnp-controller")
        assert await recorder.record(ghost, "Normal", "Synced", "ok") is None
        with pytest.raises(ValueError):
            await recorder.record(ghost, "Info", "Synced", "ok")

    run(server, body)
