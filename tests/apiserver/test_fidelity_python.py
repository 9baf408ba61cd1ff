"""The `kubernetes` Python client against `mnp local apiserver`: CRUD, patches, watches, semantics.

What mnp's controller and agent rely on, seen through the client users write scripts with: server-set
metadata, optimistic concurrency, generation and status separation, selectors, watch replay, bookmarks,
410, finalizers, garbage collection, namespace deletion, and restart durability (kill -9).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException
from urllib3.util.wait import wait_for_read

from tests.apiserver.conftest import (
    MNP_GROUP,
    MNP_PLURAL,
    MNP_VERSION,
    PNR_GROUP,
    PNR_PLURAL,
    PNR_VERSION,
    ApiServer,
    applied_status,
    crd_documents,
    install_crds,
    pod,
    policy,
    python_client,
    ruleset,
    unique,
    wait_until,
)

PNR = (PNR_GROUP, PNR_VERSION)


@pytest.fixture(scope="module")
def api(module_apiserver: ApiServer) -> Iterator[Any]:
    c = python_client(module_apiserver)
    install_crds(c, crd_documents())
    yield c
    c.close()


@pytest.fixture
def core(api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def co(api: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = unique("py")
    core.create_namespace({"metadata": {"name": name}})
    return name


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    """The Status body of an ApiException (what every client prints)."""
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["code"] == exc.value.status, body
    return body


def create_pnr(co: client.CustomObjectsApi, ns: str, name: str, **kw: Any) -> dict[str, Any]:
    return co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, ruleset(name, ns, **kw))


def get_pnr(co: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    return co.get_namespaced_custom_object(*PNR, ns, PNR_PLURAL, name)


def rv(obj: Any) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    value = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    assert isinstance(value, str), f"resourceVersion must be a string, got {value!r}"
    return int(value)


def collect(func: Callable[..., Any], *args: Any, seconds: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    """Every event of one watch that the server closes after `seconds` (timeoutSeconds)."""
    w = watch.Watch()
    return list(w.stream(func, *args, timeout_seconds=seconds, _request_timeout=seconds + 10, **kwargs))


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name", ""), rv(e["raw_object"])) for e in events]


# ---- discovery, auth -------------------------------------------------------------------------------


def test_discovery_serves_the_ruleset_resource_with_short_name_category_and_status(
    api: Any, tmp_path: Path
) -> None:
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    pnr = dyn.resources.get(api_version="mnp.dev/v1alpha1", kind="PodNetworkRuleset")
    assert (pnr.name, pnr.namespaced, pnr.short_names, pnr.categories) == (
        "podnetworkrulesets",
        True,
        ["pnr"],
        ["mnp"],
    )
    assert "status" in pnr.subresources
    assert dyn.resources.get(api_version="v1", kind="Pod").namespaced is True


def test_dynamic_client_crud_status_and_watch(api: Any, ns: str, tmp_path: Path) -> None:
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    pnrs = dyn.resources.get(api_version="mnp.dev/v1alpha1", kind="PodNetworkRuleset")
    start = pnrs.get(namespace=ns).metadata.resourceVersion
    made = pnrs.create(body=ruleset("dyn", ns), namespace=ns)
    assert made.metadata.generation == 1
    patched = pnrs.patch(
        body={"spec": {"compacted": True}},
        name="dyn",
        namespace=ns,
        content_type="application/merge-patch+json",
    )
    assert patched.spec.compacted is True and patched.metadata.generation == 2
    status = pnrs.subresources["status"].patch(
        body=applied_status(generation=2),
        name="dyn",
        namespace=ns,
        content_type="application/merge-patch+json",
    )
    assert status.status.rules == 14 and status.metadata.generation == 2
    assert [i.metadata.name for i in pnrs.get(namespace=ns, label_selector="mnp.dev/node=node-1").items] == [
        "dyn"
    ]
    pnrs.delete(name="dyn", namespace=ns)
    events = list(pnrs.watch(namespace=ns, resource_version=start, timeout=1))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]


def test_a_request_with_a_wrong_token_is_401(module_apiserver: ApiServer, tmp_path: Path) -> None:
    cfg = yaml.safe_load(module_apiserver.kubeconfig.read_text())
    for user in cfg["users"]:
        user["user"]["token"] = "wrong"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(cfg))
    bad = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(bad).list_namespace()
    assert exc.value.status == 401 and status_of(exc)["reason"] == "Unauthorized"


def test_a_watch_that_times_out_leaves_its_connection_reusable(module_apiserver: ApiServer) -> None:
    """urllib3 pools the connection of a finished watch; a server that then closes it unannounced
    (no `Connection: close`) makes the next create fail with RemoteDisconnected, as POST is not retried."""
    api = python_client(module_apiserver)
    core = client.CoreV1Api(api)
    core.list_namespace()
    list(watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1))
    time.sleep(0.3)  # let a FIN arrive, if the server sent one
    pools = api.rest_client.pool_manager.pools
    # RecentlyUsedContainer refuses plain iteration, hence .keys().
    keys = pools.keys()
    idle = [c for key in keys for c in list(pools[key].pool.queue) if c is not None and c.sock is not None]
    assert idle, "the watch's connection was not kept for reuse"
    dropped = [c for c in idle if wait_for_read(c.sock, timeout=0)]
    assert not dropped, (
        f"the server closed {len(dropped)} pooled keep-alive connection(s) after a watch ended"
    )
    api.close()


# ---- core v1 -----------------------------------------------------------------------------------------


def test_namespace_and_configmap_crud(core: client.CoreV1Api, ns: str) -> None:
    made = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    assert made.metadata.uid and made.metadata.creation_timestamp is not None and rv(made) > 0
    cm = core.read_namespaced_config_map("c", ns)
    assert cm.data == {"k": "v"} and cm.metadata.uid == made.metadata.uid
    cm.data["k2"] = "v2"
    replaced = core.replace_namespaced_config_map("c", ns, cm)
    assert rv(replaced) > rv(made)
    patched = core.patch_namespaced_config_map("c", ns, {"data": {"k": None}})
    assert patched.data == {"k2": "v2"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="a=1").items] == ["c"]
    core.delete_namespaced_config_map("c", ns)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("c", ns)
    assert exc.value.status == 404 and status_of(exc)["message"] == 'configmaps "c" not found'
    assert ns in [n.metadata.name for n in core.list_namespace().items]
    assert core.read_namespace("default").status.phase == "Active"


def test_generate_name_and_already_exists_and_missing_namespace(core: client.CoreV1Api, ns: str) -> None:
    made = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == len("gen-") + 5
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(ns, {"metadata": {"name": made.metadata.name}})
    body = status_of(exc)
    assert (exc.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == f'configmaps "{made.metadata.name}" already exists'
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    assert exc.value.status == 404 and status_of(exc)["message"] == 'namespaces "no-such-ns" not found'


def test_pod_status_patch_and_pod_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod("p1", ns, node="node-1"))
    core.create_namespaced_pod(ns, pod("p2", ns, node="node-2"))
    before = core.read_namespaced_pod("p1", ns)
    after = core.patch_namespaced_pod_status(
        "p1",
        ns,
        {
            "spec": {"nodeName": "node-9"},
            "status": {
                "phase": "Running",
                "podIP": "192.0.2.11",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
    )
    assert after.status.phase == "Running" and after.status.pod_ip == "192.0.2.11"
    assert after.spec.node_name == "node-1", "a status write must ignore spec"
    assert after.metadata.generation == before.metadata.generation

    def names(selector: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(ns, field_selector=selector).items)

    assert names("spec.nodeName=node-1") == ["p1"]
    assert names("spec.nodeName!=node-1") == ["p2"]
    assert names("status.phase=Running") == ["p1"]
    assert names("metadata.name=p2") == ["p2"]
    assert names("metadata.name=p2,spec.nodeName=node-1") == []
    assert [
        p.metadata.name
        for p in core.list_pod_for_all_namespaces(
            field_selector=f"metadata.namespace={ns},spec.nodeName=node-2"
        ).items
    ] == ["p2"]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod(ns, field_selector="spec.bogus=x")
    assert exc.value.status == 400 and "field label not supported: spec.bogus" in status_of(exc)["message"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier in (db,cache)", ["c"]),
        ("tier notin (web)", ["c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("tier=web,zone=z1", ["a"]),
        ("tier in (web),!zone", ["b"]),
    ],
    ids=["eq", "eqeq", "neq", "in", "notin", "exists", "not-exists", "and", "in-and-not-exists"],
)
def test_label_selectors_on_configmaps(
    core: client.CoreV1Api, ns: str, selector: str, expected: list[str]
) -> None:
    for name, labels in {
        "a": {"tier": "web", "zone": "z1"},
        "b": {"tier": "web"},
        "c": {"tier": "db"},
        "d": {"zone": "z2"},
    }.items():
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"set": "s", **labels}}})
    # ANDed with set=s: a real cluster adds kube-root-ca.crt to every namespace.
    listed = core.list_namespaced_config_map(ns, label_selector=f"set=s,{selector}").items
    got = sorted(c.metadata.name for c in listed)
    assert got == expected


def test_strategic_merge_patch_merges_containers_finalizers_and_conditions(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod("smp", ns))
    core.patch_namespaced_pod(
        "smp",
        ns,
        {
            "metadata": {"finalizers": ["mnp.dev/a"]},
            "spec": {"containers": [{"name": "sidecar", "image": "registry.invalid/sidecar:2"}]},
        },
    )
    core.patch_namespaced_pod("smp", ns, {"metadata": {"finalizers": ["mnp.dev/b"]}})
    live = core.read_namespaced_pod("smp", ns)
    assert [(c.name, c.image) for c in live.spec.containers] == [
        ("web", "registry.invalid/web:1"),
        ("sidecar", "registry.invalid/sidecar:2"),
    ]
    assert live.metadata.finalizers == ["mnp.dev/a", "mnp.dev/b"]
    core.patch_namespaced_pod_status(
        "smp", ns, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    core.patch_namespaced_pod_status(
        "smp", ns, {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
    )
    core.patch_namespaced_pod_status(
        "smp", ns, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    conds = {c.type: c.status for c in core.read_namespaced_pod("smp", ns).status.conditions}
    assert conds == {"Ready": "True", "PodScheduled": "True"}
    core.patch_namespaced_pod("smp", ns, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["mnp.dev/a"]}})
    assert core.read_namespaced_pod("smp", ns).metadata.finalizers == ["mnp.dev/b"]
    core.patch_namespaced_pod("smp", ns, [{"op": "remove", "path": "/metadata/finalizers"}])
    assert not core.read_namespaced_pod("smp", ns).metadata.finalizers


def test_an_events_k8s_io_event_is_listed_as_a_core_event(
    api: Any, co: client.CustomObjectsApi, ns: str
) -> None:
    made = create_pnr(co, ns, "evt")
    ref = {
        "apiVersion": "mnp.dev/v1alpha1",
        "kind": "PodNetworkRuleset",
        "name": "evt",
        "namespace": ns,
        "uid": made["metadata"]["uid"],
    }
    client.EventsV1Api(api).create_namespaced_event(
        ns,
        {
            "metadata": {"name": "evt.1"},
            "regarding": ref,
            "reason": "Applied",
            "note": "table applied",
            "type": "Normal",
            "action": "Apply",
            "eventTime": datetime.now(UTC),
            "reportingController": "mnp.dev/agent",
            "reportingInstance": "mnp-agent-node-1",
        },
    )
    selector = (
        f"involvedObject.kind=PodNetworkRuleset,involvedObject.name=evt,involvedObject.uid={ref['uid']}"
    )
    events = client.CoreV1Api(api).list_namespaced_event(ns, field_selector=selector).items
    assert [(e.reason, e.message, e.involved_object.name, e.type) for e in events] == [
        ("Applied", "table applied", "evt", "Normal")
    ]


# ---- custom objects ----------------------------------------------------------------------------------


def test_ruleset_crud_through_custom_objects_api(co: client.CustomObjectsApi, ns: str) -> None:
    made = create_pnr(co, ns, "r1")
    meta = made["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert made["apiVersion"] == "mnp.dev/v1alpha1" and made["kind"] == "PodNetworkRuleset"
    create_pnr(co, ns, "r2", node="node-2")
    listed = co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL, label_selector="mnp.dev/node=node-2")
    assert listed["kind"] == "PodNetworkRulesetList" and rv(listed) >= rv(made)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["r2"]
    assert all(
        i["kind"] == "PodNetworkRuleset" and i["apiVersion"] == "mnp.dev/v1alpha1" for i in listed["items"]
    )
    patched = co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "r1", {"spec": {"compacted": True}})
    assert patched["spec"]["compacted"] is True and patched["metadata"]["generation"] == 2
    st = co.patch_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "r1", applied_status(generation=2))
    assert st["status"]["conditions"][0]["type"] == "Applied" and st["metadata"]["generation"] == 2
    assert get_pnr(co, ns, "r1")["status"]["rules"] == 14
    co.delete_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "r1")
    with pytest.raises(ApiException) as exc:
        get_pnr(co, ns, "r1")
    body = status_of(exc)
    assert (exc.value.status, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'podnetworkrulesets.mnp.dev "r1" not found'
    assert body["details"]["name"] == "r1" and body["details"]["kind"] == "podnetworkrulesets"


def test_policy_crud_and_status_through_custom_objects_api(co: client.CustomObjectsApi, ns: str) -> None:
    args = (MNP_GROUP, MNP_VERSION, ns, MNP_PLURAL)
    made = co.create_namespaced_custom_object(*args, policy("web", ns))
    assert made["metadata"]["generation"] == 1
    got = co.get_namespaced_custom_object(*args, "web")
    assert got["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    co.patch_namespaced_custom_object(*args, "web", {"spec": {"ingress": [{"ports": [{"port": "http"}]}]}})
    st = co.patch_namespaced_custom_object_status(
        *args, "web", {"status": {"observedGeneration": 2, "selectedPods": 3}}
    )
    assert st["status"] == {"observedGeneration": 2, "selectedPods": 3}
    assert st["spec"]["ingress"] == [{"ports": [{"port": "http"}]}] and st["metadata"]["generation"] == 2
    assert [i["metadata"]["name"] for i in co.list_namespaced_custom_object(*args)["items"]] == ["web"]
    co.delete_namespaced_custom_object(*args, "web")
    assert co.list_namespaced_custom_object(*args)["items"] == []


def test_list_in_pages_with_limit_and_continue(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    for i in range(5):
        create_pnr(co, ns, f"pg-{i}")
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL, limit=2, _continue=token)
        pages += 1
        names += [i["metadata"]["name"] for i in page["items"]]
        assert len(page["items"]) <= 2
        token = page["metadata"].get("continue")
        if not token:
            break
    assert sorted(names) == [f"pg-{i}" for i in range(5)] and pages == 3
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a", "labels": {"pg": "1"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "b", "labels": {"pg": "1"}}})
    first = core.list_namespaced_config_map(ns, label_selector="pg=1", limit=1)
    assert len(first.items) == 1 and first.metadata._continue
    rest = core.list_namespaced_config_map(
        ns, label_selector="pg=1", limit=1, _continue=first.metadata._continue
    )
    assert sorted([first.items[0].metadata.name, rest.items[0].metadata.name]) == ["a", "b"]


def test_replace_with_a_stale_resource_version_is_a_conflict(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    stale = create_pnr(co, ns, "c1")
    fresh = dict(stale, spec=dict(stale["spec"], node="node-2"))
    co.replace_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "c1", fresh)
    stale["spec"]["node"] = "node-3"
    with pytest.raises(ApiException) as exc:
        co.replace_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "c1", stale)
    body = status_of(exc)
    assert (exc.value.status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on podnetworkrulesets.mnp.dev "c1": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    assert get_pnr(co, ns, "c1")["spec"]["node"] == "node-2"
    # A merge patch carrying a resourceVersion is a precondition too.
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            *PNR,
            ns,
            PNR_PLURAL,
            "c1",
            {
                "metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]},
                "spec": {"node": "node-4"},
            },
        )
    assert exc.value.status == 409
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    core.replace_namespaced_config_map(
        "cm",
        ns,
        {"metadata": {"name": "cm", "resourceVersion": cm.metadata.resource_version}, "data": {"a": "2"}},
    )
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map(
            "cm",
            ns,
            {"metadata": {"name": "cm", "resourceVersion": cm.metadata.resource_version}, "data": {"a": "3"}},
        )
    assert exc.value.status == 409 and status_of(exc)["message"].startswith(
        'Operation cannot be fulfilled on configmaps "cm"'
    )


def test_replace_of_a_ruleset_without_resource_version_is_invalid(
    co: client.CustomObjectsApi, ns: str
) -> None:
    create_pnr(co, ns, "nrv")
    with pytest.raises(ApiException) as exc:
        co.replace_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "nrv", ruleset("nrv", ns, node="node-2"))
    assert exc.value.status == 422 and status_of(exc)["reason"] == "Invalid"


def test_json_patch_through_custom_objects_api_and_a_failed_test_op(
    co: client.CustomObjectsApi, ns: str
) -> None:
    create_pnr(co, ns, "jp")
    ops = [
        {"op": "test", "path": "/spec/node", "value": "node-1"},
        {"op": "replace", "path": "/spec/node", "value": "node-2"},
        {"op": "add", "path": "/spec/policies/-", "value": "default/second"},
    ]
    out = co.patch_namespaced_custom_object(
        *PNR, ns, PNR_PLURAL, "jp", ops, _content_type="application/json-patch+json"
    )
    assert out["spec"]["node"] == "node-2" and out["spec"]["policies"] == [
        "default/web-policy",
        "default/second",
    ]
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            *PNR,
            ns,
            PNR_PLURAL,
            "jp",
            [{"op": "test", "path": "/spec/node", "value": "x"}],
            _content_type="application/json-patch+json",
        )
    assert exc.value.status == 422
    # The Python client sends a list body as a *merge* patch unless told otherwise: refused, not applied.
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            *PNR, ns, PNR_PLURAL, "jp", [{"op": "remove", "path": "/spec/policies"}]
        )
    assert exc.value.status in (400, 422)
    assert get_pnr(co, ns, "jp")["spec"]["policies"] == ["default/web-policy", "default/second"]


def test_strategic_merge_patch_of_a_custom_resource_is_unsupported_media_type(
    co: client.CustomObjectsApi, ns: str
) -> None:
    create_pnr(co, ns, "smp")
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            *PNR,
            ns,
            PNR_PLURAL,
            "smp",
            {"spec": {"compacted": True}},
            _content_type="application/strategic-merge-patch+json",
        )
    body = status_of(exc)
    assert (exc.value.status, body["reason"]) == (415, "UnsupportedMediaType")
    assert body["message"].startswith(
        "the body of the request was in an unknown format - accepted media types include:"
    )


def test_server_side_apply_creates_and_merges(co: client.CustomObjectsApi, ns: str) -> None:
    body = ruleset("ssa", ns)
    # An apply that creates answers 201, which this client's patch maps to no body (its response map
    # knows only 200): read the object back instead.
    _, code, _ = co.patch_namespaced_custom_object_with_http_info(
        *PNR,
        ns,
        PNR_PLURAL,
        "ssa",
        body,
        field_manager="mnp-controller",
        _content_type="application/apply-patch+yaml",
    )
    assert code == 201
    made = get_pnr(co, ns, "ssa")
    assert made["metadata"]["uid"] and made["metadata"]["generation"] == 1
    body["spec"]["compacted"] = True
    again = co.patch_namespaced_custom_object(
        *PNR,
        ns,
        PNR_PLURAL,
        "ssa",
        body,
        field_manager="mnp-controller",
        _content_type="application/apply-patch+yaml",
    )
    assert again["spec"]["compacted"] is True and again["metadata"]["generation"] == 2
    entries = [(m["manager"], m["operation"]) for m in again["metadata"]["managedFields"]]
    assert ("mnp-controller", "Apply") in entries
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            *PNR, ns, PNR_PLURAL, "ssa", body, _content_type="application/apply-patch+yaml"
        )
    assert exc.value.status == 400


def test_unknown_fields_are_pruned_warned_or_refused_per_field_validation(
    co: client.CustomObjectsApi, ns: str
) -> None:
    body = ruleset("fv-strict", ns)
    body["spec"]["bogus"] = 1
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, body, field_validation="Strict")
    assert exc.value.status == 400 and 'unknown field "spec.bogus"' in status_of(exc)["message"]
    for mode in (None, "Ignore", "Warn"):
        body["metadata"]["name"] = f"fv-{(mode or 'default').lower()}"
        made = co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, body, field_validation=mode)
        assert "bogus" not in made["spec"], mode
        assert "bogus" not in get_pnr(co, ns, body["metadata"]["name"])["spec"], mode


def test_schema_violations_are_422_naming_the_field(co: client.CustomObjectsApi, ns: str) -> None:
    body = ruleset("bad", ns)
    body["spec"]["node"] = "Not_A_Node"
    del body["spec"]["podUID"]
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, body)
    status = status_of(exc)
    assert (exc.value.status, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith('PodNetworkRuleset.mnp.dev "bad" is invalid: ')
    fields = {c.get("field") for c in status["details"]["causes"]}
    assert {"spec.node", "spec.podUID"} <= fields, status
    with pytest.raises(ApiException):
        get_pnr(co, ns, "bad")


def test_dry_run_all_answers_as_if_written_and_stores_nothing(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    out = co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, ruleset("dry", ns), dry_run="All")
    assert out["metadata"]["name"] == "dry" and out["metadata"]["uid"]
    with pytest.raises(ApiException) as exc:
        get_pnr(co, ns, "dry")
    assert exc.value.status == 404
    core.create_namespaced_config_map(ns, {"metadata": {"name": "keep"}})
    core.delete_namespaced_config_map("keep", ns, dry_run="All")
    assert core.read_namespaced_config_map("keep", ns).metadata.name == "keep"


def test_a_ruleset_over_the_real_object_size_limit_is_refused(co: client.CustomObjectsApi, ns: str) -> None:
    """etcd's default request limit (1.5 MiB) is why the controller compacts rulesets (spec.compacted);
    the real server answers 413 for a bigger object (and for any body over 3 MiB)."""

    def sized(name: str, mib: float) -> dict[str, Any]:
        body = ruleset(name, ns)
        n = int(mib * 1024 * 1024 / 48)
        body["spec"]["ingress"]["rules"][0]["peers"] = [
            {"cidr": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32", "pod": f"{ns}/peer-{i}"}
            for i in range(n)
        ]
        return body

    co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, sized("fits", 1.0))
    for name, mib in (("too-big", 2.0), ("way-too-big", 3.5)):
        body = sized(name, mib)
        with pytest.raises(ApiException) as exc:
            co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, body)
        assert exc.value.status == 413, f"{len(json.dumps(body))} bytes: {exc.value.status}"
        assert status_of(exc)["reason"] == "RequestEntityTooLarge"


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"name": "Upper"}, "metadata.name"),
        ({"name": "ok", "labels": {"k": "bad value!"}}, "metadata.labels"),
        ({"name": "ok", "labels": {"-k": "v"}}, "metadata.labels"),
        ({"name": "ok", "labels": {"a/b/c": "v"}}, "metadata.labels"),
        ({"name": "ok", "annotations": {"a": "x" * 262_145}}, "metadata.annotations"),
    ],
    ids=["name", "label-value", "label-key", "label-prefix", "annotations-over-256KiB"],
)
def test_object_metadata_is_validated_like_the_real_server(
    core: client.CoreV1Api, ns: str, meta: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(ns, {"metadata": meta})
    status = status_of(exc)
    assert (exc.value.status, status["reason"]) == (422, "Invalid")
    assert f'ConfigMap "{meta["name"]}" is invalid: {field}' in status["message"], status["message"]


# ---- metadata semantics ------------------------------------------------------------------------------


def test_generation_bumps_on_spec_changes_only(co: client.CustomObjectsApi, ns: str) -> None:
    made = create_pnr(co, ns, "g")
    steps = [
        (
            "label",
            lambda: co.patch_namespaced_custom_object(
                *PNR, ns, PNR_PLURAL, "g", {"metadata": {"labels": {"x": "1"}}}
            ),
            1,
        ),
        (
            "annotation",
            lambda: co.patch_namespaced_custom_object(
                *PNR, ns, PNR_PLURAL, "g", {"metadata": {"annotations": {"y": "2"}}}
            ),
            1,
        ),
        (
            "status",
            lambda: co.patch_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "g", applied_status()),
            1,
        ),
        (
            "spec",
            lambda: co.patch_namespaced_custom_object(
                *PNR, ns, PNR_PLURAL, "g", {"spec": {"node": "node-2"}}
            ),
            2,
        ),
        (
            "spec again",
            lambda: co.patch_namespaced_custom_object(
                *PNR, ns, PNR_PLURAL, "g", {"spec": {"compacted": False}}
            ),
            3,
        ),
    ]
    last = rv(made)
    for what, write, generation in steps:
        out = write()
        assert out["metadata"]["generation"] == generation, what
        assert rv(out) > last, f"{what}: every real change gets a new resourceVersion"
        last = rv(out)


def test_status_subresource_ignores_spec_and_the_main_resource_ignores_status(
    co: client.CustomObjectsApi, ns: str
) -> None:
    body = ruleset("s", ns) | applied_status()
    made = co.create_namespaced_custom_object(*PNR, ns, PNR_PLURAL, body)
    assert "status" not in made, "create must drop status when the status subresource is enabled"
    current = get_pnr(co, ns, "s")
    current["spec"]["node"] = "node-7"
    current.update(applied_status(rules=5))
    out = co.replace_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "s", current)
    assert (
        out["spec"]["node"] == "node-1" and out["status"]["rules"] == 5 and out["metadata"]["generation"] == 1
    )
    out = co.patch_namespaced_custom_object(
        *PNR, ns, PNR_PLURAL, "s", {"status": {"rules": 99}, "spec": {"node": "node-8"}}
    )
    assert (
        out["status"]["rules"] == 5 and out["spec"]["node"] == "node-8" and out["metadata"]["generation"] == 2
    )


def test_a_write_that_changes_nothing_keeps_the_resource_version_and_sends_no_event(
    co: client.CustomObjectsApi, ns: str
) -> None:
    made = create_pnr(co, ns, "noop")
    co.patch_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "noop", applied_status())
    current = get_pnr(co, ns, "noop")
    start = rv(current)
    assert rv(co.replace_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "noop", current)) == start
    labels = made["metadata"]["labels"]
    assert (
        rv(co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "noop", {"metadata": {"labels": labels}}))
        == start
    )
    assert (
        rv(co.patch_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "noop", applied_status())) == start
    )
    real = co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "noop", {"spec": {"compacted": True}})
    events = collect(co.list_namespaced_custom_object, *PNR, ns, PNR_PLURAL, resource_version=str(start))
    assert summary(events) == [("MODIFIED", "noop", rv(real))]


def test_finalizers_hold_deletion_until_the_last_one_is_removed(co: client.CustomObjectsApi, ns: str) -> None:
    made = create_pnr(co, ns, "fin", finalizers=["mnp.dev/a", "mnp.dev/b"])
    out = co.delete_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "fin")
    assert out["metadata"].get("deletionTimestamp"), out
    held = get_pnr(co, ns, "fin")
    assert held["metadata"]["deletionTimestamp"].endswith("Z")
    assert held["metadata"]["generation"] == 2, "setting deletionTimestamp bumps generation"
    co.patch_namespaced_custom_object(
        *PNR, ns, PNR_PLURAL, "fin", {"metadata": {"finalizers": ["mnp.dev/b"]}}
    )
    assert get_pnr(co, ns, "fin")["metadata"]["finalizers"] == ["mnp.dev/b"]
    co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "fin", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        get_pnr(co, ns, "fin")
    assert exc.value.status == 404
    events = collect(co.list_namespaced_custom_object, *PNR, ns, PNR_PLURAL, resource_version=str(rv(made)))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "MODIFIED" and events[0]["raw_object"]["metadata"].get("deletionTimestamp")
    assert kinds[-1] == "DELETED" and kinds.count("DELETED") == 1


def test_deleting_a_pod_garbage_collects_its_ruleset(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    owners = {}
    for name in ("owner-bg", "owner-orphan"):
        p = core.create_namespaced_pod(ns, pod(name, ns))
        owners[name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": p.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        create_pnr(co, ns, name, owner=owners[name])
    core.delete_namespaced_pod("owner-bg", ns, grace_period_seconds=0)  # bound: no kubelet to wait for

    def gone() -> bool:
        try:
            get_pnr(co, ns, "owner-bg")
        except ApiException as e:
            return e.status == 404
        return False

    wait_until(gone, 10, what="the ruleset of a deleted pod to be garbage collected")
    core.delete_namespaced_pod("owner-orphan", ns, propagation_policy="Orphan")
    time.sleep(1.0)
    kept = get_pnr(co, ns, "owner-orphan")
    assert not kept["metadata"].get("ownerReferences"), "orphaning removes the ownerReference"


def test_deleting_a_namespace_removes_its_objects(
    co: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    doomed, other = unique("doomed"), unique("other")
    for n in (doomed, other):
        core.create_namespace({"metadata": {"name": n}})
        core.create_namespaced_config_map(n, {"metadata": {"name": "cm"}})
        core.create_namespaced_pod(n, pod("p", n))
        create_pnr(co, n, "r")
        co.create_namespaced_custom_object(MNP_GROUP, MNP_VERSION, n, MNP_PLURAL, policy("pol", n))
    out = core.delete_namespace(doomed)
    assert out is not None
    # Its pod is bound to a node, so it is Terminating until that node's kubelet deletes it with grace
    # 0; no kubelet runs here, so the test plays it.
    assert core.read_namespaced_pod("p", doomed).metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("p", doomed, grace_period_seconds=0)

    def namespace_gone() -> bool:
        try:
            phase = core.read_namespace(doomed).status.phase
        except ApiException as e:
            return e.status == 404
        assert phase == "Terminating"
        return False

    wait_until(namespace_gone, 15, what=f"namespace {doomed} to be removed")
    assert co.list_namespaced_custom_object(*PNR, doomed, PNR_PLURAL)["items"] == []
    assert (
        core.list_namespaced_pod(doomed).items == [] and core.list_namespaced_config_map(doomed).items == []
    )
    assert [
        i["metadata"]["name"] for i in co.list_namespaced_custom_object(*PNR, other, PNR_PLURAL)["items"]
    ] == ["r"]
    assert core.read_namespaced_config_map("cm", other).metadata.name == "cm"


def test_a_terminating_namespace_refuses_new_objects_until_its_finalized_content_goes(
    co: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    name = unique("term")
    core.create_namespace({"metadata": {"name": name}})
    create_pnr(co, name, "held", finalizers=["mnp.dev/agent"])
    core.delete_namespace(name)
    wait_until(lambda: core.read_namespace(name).status.phase == "Terminating", 5, what="Terminating")
    time.sleep(0.5)
    assert get_pnr(co, name, "held")["metadata"]["deletionTimestamp"], "the namespace deletes its content"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
    body = status_of(exc)
    assert (exc.value.status, body["reason"]) == (403, "Forbidden")
    assert "because it is being terminated" in body["message"], body["message"]
    assert core.read_namespace(name).status.phase == "Terminating", "a finalizer holds the namespace"
    co.patch_namespaced_custom_object(*PNR, name, PNR_PLURAL, "held", {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as e:
            return e.status == 404
        return False

    wait_until(gone, 15, what=f"namespace {name} to go once its last finalizer is removed")


def test_delete_preconditions_and_foreground_propagation(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    made = create_pnr(co, ns, "pre")
    co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "pre", {"spec": {"compacted": True}})
    with pytest.raises(ApiException) as exc:
        co.delete_namespaced_custom_object(
            *PNR,
            ns,
            PNR_PLURAL,
            "pre",
            body={"preconditions": {"resourceVersion": made["metadata"]["resourceVersion"]}},
        )
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        co.delete_namespaced_custom_object(
            *PNR, ns, PNR_PLURAL, "pre", body={"preconditions": {"uid": "not-its-uid"}}
        )
    assert exc.value.status == 409
    co.delete_namespaced_custom_object(
        *PNR, ns, PNR_PLURAL, "pre", body={"preconditions": {"uid": made["metadata"]["uid"]}}
    )
    owner = core.create_namespaced_pod(ns, pod("fg", ns))
    ref = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "fg",
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    create_pnr(co, ns, "fg", owner=ref)
    core.delete_namespaced_pod("fg", ns, propagation_policy="Foreground", grace_period_seconds=0)

    def both_gone() -> bool:
        pods = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
        rulesets = [
            i["metadata"]["name"] for i in co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)["items"]
        ]
        return "fg" not in pods and "fg" not in rulesets

    wait_until(both_gone, 10, what="foreground deletion of the pod and its ruleset")


# ---- watch -------------------------------------------------------------------------------------------


def test_watch_from_a_resource_version_replays_every_change_in_order(
    co: client.CustomObjectsApi, ns: str
) -> None:
    start = rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL))
    writes = [("ADDED", "a", create_pnr(co, ns, "a")), ("ADDED", "b", create_pnr(co, ns, "b"))]
    writes.append(
        (
            "MODIFIED",
            "a",
            co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "a", {"spec": {"node": "node-2"}}),
        )
    )
    writes.append(("DELETED", "b", co.delete_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "b")))
    writes.append(
        (
            "MODIFIED",
            "a",
            co.patch_namespaced_custom_object_status(*PNR, ns, PNR_PLURAL, "a", applied_status()),
        )
    )
    events = collect(co.list_namespaced_custom_object, *PNR, ns, PNR_PLURAL, resource_version=str(start))
    got = summary(events)
    assert [(t, n) for t, n, _ in got] == [(t, n) for t, n, _ in writes]
    for (kind, _, version), (_, _, written) in zip(got, writes, strict=True):
        if kind != "DELETED":
            assert version == rv(written), got
    versions = [version for *_, version in got]
    assert versions == sorted(set(versions)), f"not strictly increasing: {got}"
    assert events[2]["raw_object"]["spec"]["node"] == "node-2"


def test_watch_without_a_resource_version_starts_with_the_current_objects(
    co: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    create_pnr(co, ns, "x")
    create_pnr(co, ns, "y")
    for version in (None, "0"):
        kw = {} if version is None else {"resource_version": version}
        got = summary(collect(co.list_namespaced_custom_object, *PNR, ns, PNR_PLURAL, seconds=1, **kw))
        assert sorted((t, n) for t, n, _ in got) == [("ADDED", "x"), ("ADDED", "y")], version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm", "labels": {"t": "1"}}})
    typed = collect(core.list_namespaced_config_map, ns, label_selector="t=1", seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in typed] == [("ADDED", "cm")]


def test_watch_bookmarks_only_when_asked(co: client.CustomObjectsApi, ns: str) -> None:
    create_pnr(co, ns, "bm")
    start = rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL))
    asked = collect(
        co.list_namespaced_custom_object,
        *PNR,
        ns,
        PNR_PLURAL,
        resource_version=str(start),
        allow_watch_bookmarks=True,
        seconds=2,
    )
    bookmarks = [e["raw_object"] for e in asked if e["type"] == "BOOKMARK"]
    assert bookmarks, f"no BOOKMARK before the timed close: {summary(asked)}"
    assert bookmarks[-1]["kind"] == "PodNetworkRuleset" and rv(bookmarks[-1]) >= start
    unasked = collect(
        co.list_namespaced_custom_object, *PNR, ns, PNR_PLURAL, resource_version=str(start), seconds=2
    )
    assert [e for e in unasked if e["type"] == "BOOKMARK"] == []


def test_watch_with_initial_events_ends_the_initial_list_with_an_annotated_bookmark(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one", "labels": {"t": "1"}}})
    events = collect(
        core.list_namespaced_config_map,
        ns,
        label_selector="t=1",
        send_initial_events=True,
        allow_watch_bookmarks=True,
        resource_version_match="NotOlderThan",
        seconds=2,
    )
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and events[0]["object"].metadata.name == "one"
    end = [
        e
        for e in events
        if e["type"] == "BOOKMARK"
        and e["raw_object"]["metadata"].get("annotations", {}).get("k8s.io/initial-events-end") == "true"
    ]
    assert end and events.index(end[0]) == 1, types


def test_a_label_moving_between_nodes_is_deleted_on_one_watch_and_added_on_the_other(
    co: client.CustomObjectsApi, ns: str
) -> None:
    start = str(rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)))
    made = create_pnr(co, ns, "mover", node="node-a")
    moved = co.patch_namespaced_custom_object(
        *PNR,
        ns,
        PNR_PLURAL,
        "mover",
        {"metadata": {"labels": {"mnp.dev/node": "node-b"}}, "spec": {"node": "node-b"}},
    )
    on_a = collect(
        co.list_namespaced_custom_object,
        *PNR,
        ns,
        PNR_PLURAL,
        resource_version=start,
        label_selector="mnp.dev/node=node-a",
    )
    on_b = collect(
        co.list_namespaced_custom_object,
        *PNR,
        ns,
        PNR_PLURAL,
        resource_version=start,
        label_selector="mnp.dev/node=node-b",
    )
    assert summary(on_a) == [("ADDED", "mover", rv(made)), ("DELETED", "mover", rv(moved))]
    assert on_a[1]["raw_object"]["metadata"]["labels"]["mnp.dev/node"] == "node-a", (
        "DELETED carries the old object"
    )
    assert summary(on_b) == [("ADDED", "mover", rv(moved))]


def test_binding_a_pod_adds_it_to_its_nodes_field_selector_watch(core: client.CoreV1Api, ns: str) -> None:
    body = pod("unbound", ns)
    del body["spec"]["nodeName"]
    made = core.create_namespaced_pod(ns, body)
    start = made.metadata.resource_version
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "unbound"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-7"},
    }
    core.create_namespaced_pod_binding("unbound", ns, binding, _preload_content=False)
    assert core.read_namespaced_pod("unbound", ns).spec.node_name == "node-7"
    events = collect(
        core.list_namespaced_pod, ns, field_selector="spec.nodeName=node-7", resource_version=start
    )
    assert [(e["type"], e["object"].metadata.name, e["object"].spec.node_name) for e in events] == [
        ("ADDED", "unbound", "node-7")
    ]


def test_watch_with_a_field_selector_on_the_name(co: client.CustomObjectsApi, ns: str) -> None:
    start = str(rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)))
    create_pnr(co, ns, "one")
    create_pnr(co, ns, "two")
    co.patch_namespaced_custom_object(*PNR, ns, PNR_PLURAL, "two", {"spec": {"compacted": True}})
    got = summary(
        collect(
            co.list_namespaced_custom_object,
            *PNR,
            ns,
            PNR_PLURAL,
            resource_version=start,
            field_selector="metadata.name=two",
        )
    )
    assert [(t, n) for t, n, _ in got] == [("ADDED", "two"), ("MODIFIED", "two")]


def test_bookmarks_arrive_periodically_when_asked(
    module_apiserver: ApiServer, co: client.CustomObjectsApi, ns: str
) -> None:
    start = str(rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)))
    module_apiserver.faults({"bookmarkSeconds": 0.3})
    try:
        events = collect(
            co.list_namespaced_custom_object,
            *PNR,
            ns,
            PNR_PLURAL,
            resource_version=start,
            allow_watch_bookmarks=True,
            seconds=2,
        )
    finally:
        module_apiserver.faults({"reset": True})
    bookmarks = [rv(e["raw_object"]) for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 3, f"expected a bookmark every 0.3 s, got {summary(events)}"
    assert bookmarks == sorted(bookmarks)


def test_a_watch_dropped_by_the_server_is_resumed_by_the_client_without_a_gap(
    module_apiserver: ApiServer, co: client.CustomObjectsApi, ns: str
) -> None:
    start = str(rv(co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)))
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def follow() -> None:
        # No timeoutSeconds: when the server ends the stream the client re-watches from its last version.
        for e in w.stream(
            co.list_namespaced_custom_object,
            *PNR,
            ns,
            PNR_PLURAL,
            resource_version=start,
            _request_timeout=30,
        ):
            seen.append((e["type"], e["raw_object"]["metadata"]["name"]))
            if e["raw_object"]["metadata"]["name"] == "last":
                w.stop()
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    create_pnr(co, ns, "first")
    wait_until(lambda: ("ADDED", "first") in seen, 10, what="the first event")
    module_apiserver.faults({"dropWatches": True})
    create_pnr(co, ns, "between")
    time.sleep(0.2)
    create_pnr(co, ns, "last")
    t.join(15)
    assert seen == [("ADDED", "first"), ("ADDED", "between"), ("ADDED", "last")]


def test_lease_election_with_microtime_and_optimistic_concurrency(api: Any, ns: str) -> None:
    leases = client.CoordinationV1Api(api)
    now = datetime.now(UTC).replace(microsecond=123456)
    made = leases.create_namespaced_lease(
        ns,
        {
            "metadata": {"name": "mnp-controller"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": now, "renewTime": now},
        },
    )
    assert made.spec.renew_time == now, "MicroTime keeps microseconds"
    raw = json.loads(leases.read_namespaced_lease("mnp-controller", ns, _preload_content=False).data)
    assert raw["spec"]["renewTime"] == now.strftime("%Y-%m-%dT%H:%M:%S.123456Z")
    made.spec.renew_time = now + timedelta(seconds=5)
    renewed = leases.replace_namespaced_lease("mnp-controller", ns, made)
    stale = made
    stale.spec.holder_identity = "b"
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("mnp-controller", ns, stale)
    assert exc.value.status == 409
    assert (
        leases.read_namespaced_lease("mnp-controller", ns).spec.holder_identity
        == renewed.spec.holder_identity
        == "a"
    )


# ---- restart durability --------------------------------------------------------------------------------


def state(co: client.CustomObjectsApi, ns: str) -> dict[str, tuple[int, Any, Any]]:
    items = co.list_namespaced_custom_object(*PNR, ns, PNR_PLURAL)["items"]
    return {i["metadata"]["name"]: (rv(i), i["spec"], i.get("status")) for i in items}


def test_every_acknowledged_write_survives_kill_9(apiserver: ApiServer) -> None:
    api = python_client(apiserver)
    install_crds(api, crd_documents())
    co, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "durable"}})
    for i in range(20):
        create_pnr(co, "durable", f"r{i}")
    for i in range(0, 20, 2):
        co.patch_namespaced_custom_object(*PNR, "durable", PNR_PLURAL, f"r{i}", {"spec": {"node": "node-2"}})
    for i in range(0, 20, 3):
        co.patch_namespaced_custom_object_status(*PNR, "durable", PNR_PLURAL, f"r{i}", applied_status())
    for i in range(0, 20, 5):
        co.delete_namespaced_custom_object(*PNR, "durable", PNR_PLURAL, f"r{i}")
    before = state(co, "durable")
    highest = max(r for r, _, _ in before.values())
    apiserver.restart(crash=True)
    api = python_client(apiserver)
    co = client.CustomObjectsApi(api)
    assert state(co, "durable") == before
    after = create_pnr(co, "durable", "new")
    assert rv(after) > highest, "resourceVersions keep increasing across a restart"
    assert get_pnr(co, "durable", "r1")["metadata"]["uid"]


def test_a_client_made_before_a_restart_keeps_working_after_it(apiserver: ApiServer) -> None:
    api = python_client(apiserver)
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    apiserver.restart(crash=False)
    assert core.read_namespaced_config_map("before", "default").metadata.name == "before"


def test_the_server_starts_in_under_two_seconds(apiserver: ApiServer) -> None:
    assert apiserver.ready_seconds < 2.0, (
        f"first start (CA, certificate, empty store) took {apiserver.ready_seconds:.2f}s"
    )
    apiserver.restart(crash=False)
    assert apiserver.ready_seconds < 2.0, f"restart took {apiserver.ready_seconds:.2f}s"


def test_sigterm_stops_the_server(apiserver: ApiServer) -> None:
    started = time.monotonic()
    code = apiserver.terminate()
    assert code is not None and time.monotonic() - started < 5
    apiserver.start()


def test_a_watch_after_a_restart_resumes_from_its_last_version_or_gets_410_and_relists(
    apiserver: ApiServer,
) -> None:
    api = python_client(apiserver)
    install_crds(api, crd_documents())
    co, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "resume"}})
    seen: dict[str, dict[str, Any]] = {}
    last = str(rv(co.list_namespaced_custom_object(*PNR, "resume", PNR_PLURAL)))
    for i in range(3):
        create_pnr(co, "resume", f"a{i}")
    for e in collect(
        co.list_namespaced_custom_object, *PNR, "resume", PNR_PLURAL, resource_version=last, seconds=1
    ):
        seen[e["raw_object"]["metadata"]["name"]] = e["raw_object"]
        last = e["raw_object"]["metadata"]["resourceVersion"]
    assert sorted(seen) == ["a0", "a1", "a2"]
    # Acknowledged while nobody watches, then a crash.
    co.patch_namespaced_custom_object(*PNR, "resume", PNR_PLURAL, "a0", {"spec": {"node": "node-2"}})
    co.delete_namespaced_custom_object(*PNR, "resume", PNR_PLURAL, "a1")
    apiserver.restart(crash=True)
    api = python_client(apiserver)
    co = client.CustomObjectsApi(api)
    create_pnr(co, "resume", "b0")
    try:
        events = collect(
            co.list_namespaced_custom_object, *PNR, "resume", PNR_PLURAL, resource_version=last, seconds=1
        )
        outcome = "resumed"
        for e in events:
            obj = e["raw_object"]
            assert int(obj["metadata"]["resourceVersion"]) > int(last), (
                "events after the watched version only"
            )
            last = obj["metadata"]["resourceVersion"]
            if e["type"] == "DELETED":
                seen.pop(obj["metadata"]["name"], None)
            else:
                seen[obj["metadata"]["name"]] = obj
    except ApiException as e:
        assert e.status == 410, e
        outcome = "relisted"
        listed = co.list_namespaced_custom_object(*PNR, "resume", PNR_PLURAL)
        seen = {i["metadata"]["name"]: i for i in listed["items"]}
    final = state(co, "resume")
    assert {n: rv(o) for n, o in seen.items()} == {n: r for n, (r, _, _) in final.items()}, outcome
    assert seen["a0"]["spec"]["node"] == "node-2" and "a1" not in seen and "b0" in seen


# ---- 410 -------------------------------------------------------------------------------------------------


def test_a_watch_from_a_version_older_than_the_history_gets_410_and_a_relist_recovers(
    apiserver: ApiServer,
) -> None:
    """The history of this server starts empty at a restart (mnp/local/apiserver/watch.py), so a
    version from before a restart, with writes after it, is older than the kept history."""
    api = python_client(apiserver)
    core = client.CoreV1Api(api)
    old = str(rv(core.list_namespaced_config_map("default")))
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    apiserver.restart(crash=False)
    with pytest.raises(ApiException) as exc:
        collect(core.list_namespaced_config_map, "default", resource_version=old, seconds=1)
    assert exc.value.status == 410 and "Expired" in str(exc.value.reason)
    assert f"too old resource version: {old}" in str(exc.value.reason)
    listed = core.list_namespaced_config_map("default")
    assert "after" in [c.metadata.name for c in listed.items]
    done = threading.Event()

    def write_later() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map("default", {"metadata": {"name": "later"}})
        done.set()

    threading.Thread(target=write_later, daemon=True).start()
    events = collect(
        core.list_namespaced_config_map, "default", resource_version=listed.metadata.resource_version
    )
    assert done.is_set() and [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "later")]


def test_a_forced_410_makes_the_client_raise_after_one_retry_and_a_relist_recovers(
    module_apiserver: ApiServer, core: client.CoreV1Api, ns: str
) -> None:
    listed = core.list_namespaced_config_map(ns)
    module_apiserver.faults({"watchGone": True})
    try:
        with pytest.raises(ApiException) as exc:
            # No timeoutSeconds: the client retries a 410 once from the same version, then raises.
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map,
                ns,
                resource_version=listed.metadata.resource_version,
                _request_timeout=10,
            ):
                pass
        assert exc.value.status == 410
    finally:
        module_apiserver.faults({"reset": True})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "after-410", "labels": {"t": "1"}}})
    relisted = core.list_namespaced_config_map(ns, label_selector="t=1")
    assert [c.metadata.name for c in relisted.items] == ["after-410"]
    events = collect(
        core.list_namespaced_config_map,
        ns,
        label_selector="t=1",
        resource_version=relisted.metadata.resource_version,
        seconds=1,
    )
    assert events == []
