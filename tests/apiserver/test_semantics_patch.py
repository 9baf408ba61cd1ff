"""Patch semantics: strategic merge for built-in kinds (keyed lists and directives), server-side
apply (create, merge, managed fields, dropped fields removed), and label/field selectors on lists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.apiserver.conftest import dollar_keys, running_apiserver, unique
from tests.apiserver.test_semantics_support import Http, crd, install, iter_names, namespace, widget

SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
W = "/apis/example.com/v1"


@pytest.fixture
def h() -> Iterator[Http]:
    with running_apiserver() as server:
        http = Http(server)
        install(http, crd("example.com", "widgets", "Widget"))
        yield http


@pytest.fixture
def ns(h: Http) -> str:
    return namespace(h, unique("patch"))


def pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "finalizers": ["a/x"]},
            "spec": {"containers": [
                {"name": "web", "image": "web:1", "ports": [{"containerPort": 80}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side", "image": "side:1"}]}}


def deployment(name: str) -> dict[str, object]:
    """A Deployment whose pod template is `pod(name)`: its spec may change, unlike a pod's."""
    p = pod(name)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": p["metadata"],
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": p["spec"]}}}


def test_strategic_merge_merges_containers_env_and_ports_by_key(h: Http, ns: str) -> None:
    h.create(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment("p"))
    got = h.ok("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/p", {"metadata": {"finalizers": ["b/y"]},
               "spec": {"template": {"spec": {
                   "containers": [{"name": "web", "image": "web:2", "env": [{"name": "B", "value": "3"}],
                                   "ports": [{"containerPort": 443}]}]}}}}, ctype=SMP)
    assert got["metadata"]["generation"] == 2
    web, side = got["spec"]["template"]["spec"]["containers"]
    assert (web["image"], side["image"]) == ("web:2", "side:1")
    assert web["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert [p["containerPort"] for p in web["ports"]] == [80, 443]
    assert got["metadata"]["finalizers"] == ["a/x", "b/y"]


def test_strategic_merge_directives_are_applied_never_stored(h: Http, ns: str) -> None:
    h.create(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment("d"))
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/d"
    got = h.ok("PATCH", path, {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "env": [{"$patch": "delete", "name": "A"}], "imagePullPolicy": None,
                            "$setElementOrder/env": [{"name": "B"}]}]}}}}, ctype=SMP)
    containers = got["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["side", "web"]
    assert "imagePullPolicy" not in containers[1] and containers[1]["env"] == [{"name": "B", "value": "2"}]
    assert got["metadata"].get("finalizers", []) == []
    assert dollar_keys(got) == []
    replaced = h.ok("PATCH", path, {"spec": {"template": {"spec": {
        "containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}}}}, ctype=SMP)
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["only"]
    assert dollar_keys(replaced) == []


def test_strategic_merge_of_pod_status_conditions_merges_by_type(h: Http, ns: str) -> None:
    h.create(f"/api/v1/namespaces/{ns}/pods", pod("c"))
    path = f"/api/v1/namespaces/{ns}/pods/c/status"
    h.ok("PATCH", path, {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                                   {"type": "PodScheduled", "status": "True"}]}}, ctype=SMP)
    got = h.ok("PATCH", path, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, ctype=SMP)
    assert {c["type"]: c["status"] for c in got["status"]["conditions"]} == {"Ready": "True", "PodScheduled": "True"}


def test_server_side_apply_creates_merges_and_removes_fields_its_manager_dropped(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/ssa"
    first = widget("ssa", labels={"keep": "1", "drop": "1"})
    first["spec"] = {"size": 2, "color": "red"}
    status, made, _ = h.call("PATCH", path, first, ctype=APPLY, params={"fieldManager": "tool"})
    assert status == 201 and made["metadata"]["generation"] == 1
    h.ok("PATCH", path, {"metadata": {"labels": {"other": "x"}}}, ctype="application/merge-patch+json")
    second = widget("ssa", labels={"keep": "1"})
    second["spec"] = {"size": 3}
    got = h.ok("PATCH", path, second, ctype=APPLY, params={"fieldManager": "tool"})
    assert got["spec"] == {"size": 3} and got["metadata"]["generation"] == 2
    assert got["metadata"]["labels"] == {"keep": "1", "other": "x"}
    entry = next(m for m in got["metadata"]["managedFields"] if m["manager"] == "tool")
    assert entry["operation"] == "Apply" and entry["fieldsType"] == "FieldsV1"
    assert "f:size" in entry["fieldsV1"]["f:spec"]
    status, err, _ = h.call("PATCH", path, second, ctype=APPLY)
    assert status == 400 and "fieldManager" in err["message"]


def test_server_side_apply_accepts_yaml_bodies_for_built_ins(h: Http, ns: str) -> None:
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n"
    status, made, _ = h.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/y", doc, ctype=APPLY,
                             params={"fieldManager": "kubectl", "force": "false"})
    assert status == 201 and made["data"] == {"k": "v"}


def test_label_selectors_support_every_operator(h: Http, ns: str) -> None:
    labels = {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "prod"}, "c": {"tier": "web"},
              "d": {}}
    for name, lab in labels.items():
        h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name, "labels": lab}})
    cases = {
        "tier=web": ["a", "c"], "tier==web": ["a", "c"], "tier!=web": ["b", "d"], "tier in (web,db)": ["a", "b", "c"],
        "tier notin (web)": ["b", "d"], "env": ["a", "b"], "!env": ["c", "d"], "tier=web,env=prod": ["a"],
    }
    for selector, want in cases.items():
        got = h.get(f"/api/v1/namespaces/{ns}/configmaps", params={"labelSelector": selector})["items"]
        assert list(iter_names(got)) == want, selector
    status, body, _ = h.call("GET", f"/api/v1/namespaces/{ns}/configmaps", params={"labelSelector": "a b c"})
    assert status == 400


def test_field_selectors_on_names_namespaces_and_pod_fields(h: Http, ns: str) -> None:
    for name, node in (("p1", "node-1"), ("p2", "node-2")):
        body = pod(name)
        body["spec"]["nodeName"] = node  # type: ignore[index]
        h.create(f"/api/v1/namespaces/{ns}/pods", body)
    sel = {"spec.nodeName=node-1": ["p1"], "spec.nodeName!=node-1": ["p2"], "metadata.name=p2": ["p2"],
           f"metadata.namespace={ns},status.phase=Pending": ["p1", "p2"], "metadata.name=p1,metadata.name=p1": ["p1"]}
    for selector, want in sel.items():
        got = h.get("/api/v1/pods", params={"fieldSelector": selector})["items"]
        assert [i["metadata"]["name"] for i in got if i["metadata"]["namespace"] == ns] == want, selector
    status, body, _ = h.call("GET", f"{W}/widgets", params={"fieldSelector": "spec.size=1"})
    assert status == 400 and body["message"] == "field label not supported: spec.size"


def test_events_written_through_events_k8s_io_are_core_events_too(h: Http, ns: str) -> None:
    made = h.create(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "eventTime": "2026-11-25T12:00:00.000000Z", "reportingController": "mnp.dev/agent",
        "reportingInstance": "agent-node-1", "action": "Apply", "reason": "Applied", "type": "Normal",
        "note": "ruleset applied", "regarding": {"kind": "Pod", "namespace": ns, "name": "web-1"}})
    assert made["apiVersion"] == "events.k8s.io/v1" and made["note"] == "ruleset applied"
    core = h.get(f"/api/v1/namespaces/{ns}/events", params={"fieldSelector": "involvedObject.name=web-1"})["items"]
    assert [(e["message"], e["involvedObject"]["kind"], e["reportingComponent"]) for e in core] == [
        ("ruleset applied", "Pod", "mnp.dev/agent")]
    new = h.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", params={"fieldSelector": "regarding.name=web-1"})
    assert [e["regarding"]["name"] for e in new["items"]] == ["web-1"] and new["items"][0]["kind"] == "Event"
    patched = h.ok("PATCH", f"/apis/events.k8s.io/v1/namespaces/{ns}/events/e1", {"note": "again"},
                   ctype="application/merge-patch+json")
    assert patched["note"] == "again" and h.get(f"/api/v1/namespaces/{ns}/events/e1")["message"] == "again"


def test_pod_spec_is_immutable_except_images_and_node_name_is_set_by_binding(h: Http, ns: str) -> None:
    h.create(f"/api/v1/namespaces/{ns}/pods", pod("im"))
    path = f"/api/v1/namespaces/{ns}/pods/im"
    ok = h.ok("PATCH", path, {"spec": {"containers": [{"name": "web", "image": "web:9"}]}}, ctype=SMP)
    assert ok["spec"]["containers"][0]["image"] == "web:9"
    status, body, _ = h.call("PATCH", path, {"spec": {"containers": [{"name": "web", "command": ["sh"]}]}}, ctype=SMP)
    assert (status, body["reason"]) == (422, "Invalid") and "pod updates may not change fields" in body["message"]
    assert h.call("PATCH", path, {"spec": {"nodeName": "node-1"}}, ctype=SMP)[0] == 422
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "im"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-2"}}
    assert h.call("POST", f"{path}/binding", binding)[0] == 201
    assert h.get(path)["spec"]["nodeName"] == "node-2"
    status, body, _ = h.call("POST", f"{path}/binding", binding)
    assert status == 409 and 'already assigned to node "node-2"' in body["message"]
    status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "noimg"},
                                                                        "spec": {"containers": [{"name": "a"}]}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.containers[0].image"


def test_list_pages_with_limit_and_continue_cover_every_object_once(h: Http, ns: str) -> None:
    for n in range(7):
        h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"pg{n}"}})
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params = {"limit": "3", **({"continue": token} if token else {})}
        got = h.get(f"/api/v1/namespaces/{ns}/configmaps", params=params)
        seen += list(iter_names(got["items"]))
        pages += 1
        token = got["metadata"].get("continue", "")
        if not token:
            break
        assert got["metadata"]["remainingItemCount"] == 7 - len(seen)
    assert (seen, pages) == ([f"pg{n}" for n in range(7)], 3)
    status, body, _ = h.call("GET", f"/api/v1/namespaces/{ns}/configmaps", params={"continue": "garbage"})
    assert status == 400


def _field(num: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint (int) or a length-delimited value (bytes)."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_bodies_of_kubectls_typed_clients_are_decoded(h: Http) -> None:
    name = unique("pb")
    labels = _field(11, _field(1, b"team") + _field(2, b"net"))
    meta = _field(1, name.encode()) + labels
    cm = _field(1, meta) + _field(2, _field(1, b"k") + _field(2, b"v"))
    envelope = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, cm)
    status, made, headers = h.call("POST", "/api/v1/namespaces/default/configmaps", envelope,
                                   ctype="application/vnd.kubernetes.protobuf",
                                   headers={"Accept": "application/vnd.kubernetes.protobuf,application/json"})
    assert status == 201 and headers["content-type"] == "application/json"
    assert (made["metadata"]["name"], made["metadata"]["labels"], made["data"]) == (name, {"team": "net"}, {"k": "v"})
    unknown = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Service")) + _field(2, b"")
    status, body, _ = h.call("POST", "/api/v1/namespaces/default/configmaps", unknown,
                             ctype="application/vnd.kubernetes.protobuf")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_retain_keys_drops_the_keys_a_patch_does_not_retain(h: Http, ns: str) -> None:
    h.create(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment("rk"))
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/rk"
    h.ok("PATCH", path, {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}, ctype=SMP)
    got = h.ok("PATCH", path, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, ctype=SMP)
    assert got["spec"]["strategy"] == {"type": "Recreate"}


def test_delete_collection_honours_the_label_selector(h: Http, ns: str) -> None:
    for name, tier in (("x1", "a"), ("x2", "a"), ("x3", "b")):
        h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name, "labels": {"tier": tier}}})
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps", params={"labelSelector": "tier=a"})
    assert list(iter_names(h.get(f"/api/v1/namespaces/{ns}/configmaps")["items"])) == ["x3"]


def test_dry_run_updates_and_patches_change_nothing(h: Http, ns: str) -> None:
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("dr"))
    path = f"{W}/namespaces/{ns}/widgets/dr"
    answer = h.ok("PATCH", path, {"spec": {"size": 5}}, ctype="application/merge-patch+json", params={"dryRun": "All"})
    assert answer["spec"]["size"] == 5 and answer["metadata"]["generation"] == 2
    h.ok("PUT", path, {**made, "spec": {"size": 6}}, params={"dryRun": "All"})
    now = h.get(path)
    assert (now["spec"]["size"], now["metadata"]["resourceVersion"]) == (1, made["metadata"]["resourceVersion"])


def test_server_side_apply_conflicts_between_appliers_unless_forced(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/owned"
    mine = {**widget("owned"), "spec": {"size": 2, "color": "red"}}
    h.ok("PATCH", path, mine, ctype=APPLY, params={"fieldManager": "a"})
    same = {**widget("owned"), "spec": {"size": 2}}
    h.ok("PATCH", path, same, ctype=APPLY, params={"fieldManager": "b"})  # same value: shared, no conflict
    theirs = {**widget("owned"), "spec": {"size": 3}}
    status, body, _ = h.call("PATCH", path, theirs, ctype=APPLY, params={"fieldManager": "b"})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "a": .spec.size'
    forced = h.ok("PATCH", path, theirs, ctype=APPLY, params={"fieldManager": "b", "force": "true"})
    assert forced["spec"] == {"size": 3, "color": "red"}
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:size" not in owners["a"].get("f:spec", {}) and "f:size" in owners["b"]["f:spec"]


def test_crd_selectable_fields_work_as_field_selectors(h: Http, ns: str) -> None:
    body = crd("sel.example.com", "things", "Thing")
    body["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.color"}]
    install(h, body)
    for name, color in (("r", "red"), ("b", "blue")):
        h.create(f"/apis/sel.example.com/v1/namespaces/{ns}/things", {
            "apiVersion": "sel.example.com/v1", "kind": "Thing", "metadata": {"name": name},
            "spec": {"size": 1, "color": color}})
    got = h.get(f"/apis/sel.example.com/v1/namespaces/{ns}/things", params={"fieldSelector": "spec.color=blue"})
    assert list(iter_names(got["items"])) == ["b"]
    assert h.call("GET", "/apis/sel.example.com/v1/things", params={"fieldSelector": "spec.size=1"})[0] == 400


def test_services_are_served_and_their_ports_merge_by_port(h: Http, ns: str) -> None:
    svc = {"metadata": {"name": "s", "labels": {"kubernetes.io/cluster-service": "true"}},
           "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}}
    h.create(f"/api/v1/namespaces/{ns}/services", svc)
    got = h.ok("PATCH", f"/api/v1/namespaces/{ns}/services/s", {"spec": {"ports": [{"port": 80, "name": "http"}]}},
               ctype=SMP)
    assert got["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "name": "http"}, {"port": 443, "protocol": "TCP"}]
    listed = h.get(f"/api/v1/namespaces/{ns}/services", params={"labelSelector": "kubernetes.io/cluster-service=true"})
    assert list(iter_names(listed["items"])) == ["s"]
