"""Semantics of the local API server, one rule per test, over plain HTTPS: auth, discovery, OpenAPI,
CRUD, resourceVersion, generation, status subresource, validation, dry run, and writes that leave
fields as stored (not judged again only while the schema that judged them is in place; earlier
versions never change)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.apiserver.conftest import ApiServer, running_apiserver, unique
from tests.apiserver.test_semantics_support import CRDS, Http, crd, install, namespace, rv, widget

W = "/apis/example.com/v1"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def h() -> Iterator[Http]:
    with running_apiserver() as server:
        http = Http(server)
        install(http, crd("example.com", "widgets", "Widget", short=("wd",), categories=("all", "toys"),
                          columns=[{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                   {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                                   {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                                   {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]))
        install(http, crd("example.com", "gadgets", "Gadget", scope="Cluster", versions=("v1", "v2beta1"),
                          status=False))
        yield http


@pytest.fixture
def ns(h: Http) -> str:
    return namespace(h, unique("sem"))


def test_requests_without_or_with_a_wrong_token_are_401_status(h: Http) -> None:
    for token in ("", "wrong"):
        status, body, _ = Http(h.server, token).call("GET", "/api/v1/namespaces")
        assert status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    status, body, _ = Http(h.server, "").call("GET", "/version")
    assert status == 200 and body["major"] == "1"


def test_the_bearer_scheme_is_case_insensitive_as_the_kubernetes_in_cluster_client_sends_it(h: Http) -> None:
    _, admin, _ = h.server.credentials()
    for scheme in ("bearer", "BEARER"):
        status, _, _ = Http(h.server, "").call("GET", "/api/v1/namespaces", headers={"Authorization": f"{scheme} {admin}"})
        assert status == 200, scheme
    status, _, _ = Http(h.server, "").call("GET", "/api/v1/namespaces", headers={"Authorization": f"Basic {admin}"})
    assert status == 401


def test_legacy_discovery_lists_crd_resources_with_short_names_categories_and_status(h: Http) -> None:
    groups = {g["name"]: g for g in h.get("/apis")["groups"]}
    assert groups["example.com"]["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in groups["example.com"]["versions"]] == ["v1", "v2beta1"]
    res = {r["name"]: r for r in h.get(f"{W}/")["resources"]}
    assert res["widgets"]["shortNames"] == ["wd"] and res["widgets"]["categories"] == ["all", "toys"]
    assert res["widgets"]["namespaced"] is True and res["widgets"]["singularName"] == "widget"
    assert res["widgets/status"]["verbs"] == ["get", "patch", "update"]
    assert res["gadgets"]["namespaced"] is False and "gadgets/status" not in res
    core = {r["name"] for r in h.get("/api/v1")["resources"]}
    assert {"pods", "pods/status", "namespaces", "nodes", "nodes/status", "events", "configmaps", "secrets",
            "serviceaccounts"} <= core
    assert h.get("/api")["versions"] == ["v1"]


def test_aggregated_discovery_answers_with_its_own_content_type(h: Http) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, body, headers = h.call("GET", "/apis", headers={"Accept": accept})
    assert status == 200 and headers["content-type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    groups = {g["metadata"]["name"]: g for g in body["items"]}
    widgets = next(r for r in groups["example.com"]["versions"][0]["resources"] if r["resource"] == "widgets")
    assert widgets["responseKind"]["kind"] == "Widget" and widgets["scope"] == "Namespaced"
    assert widgets["subresources"][0]["subresource"] == "status"
    _, core, _ = h.call("GET", "/api", headers={"Accept": accept})
    assert [g["metadata"]["name"] for g in core["items"]] == [""]


def test_crd_resources_appear_in_discovery_and_openapi_at_once_and_vanish_when_deleted(h: Http) -> None:
    before = h.get("/openapi/v3")["paths"]
    install(h, crd("temp.example.com", "things", "Thing"))
    assert any(r["name"] == "things" for r in h.get("/apis/temp.example.com/v1")["resources"])
    index = h.get("/openapi/v3")["paths"]
    url = index["apis/temp.example.com/v1"]["serverRelativeURL"]
    doc = h.get(url)
    item = doc["paths"]["/apis/temp.example.com/v1/namespaces/{namespace}/things/{name}"]
    assert item["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Thing"
    assert any(p["name"] == "fieldValidation" for p in item["patch"]["parameters"])
    assert "application/strategic-merge-patch+json" not in item["patch"]["requestBody"]["content"]
    assert index["api/v1"] == before["api/v1"]
    h.ok("DELETE", f"{CRDS}/things.temp.example.com")
    status, body, _ = h.call("GET", "/apis/temp.example.com/v1")
    assert status == 404 and body["reason"] == "NotFound"
    assert "apis/temp.example.com/v1" not in h.get("/openapi/v3")["paths"]


def test_create_sets_server_fields_and_one_global_resource_version_increases(h: Http, ns: str) -> None:
    a = h.create(f"{W}/namespaces/{ns}/widgets", widget("a", uid="mine", generation=9))
    cm = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    b = h.create(f"{W}/namespaces/{ns}/widgets", widget("b"))
    assert a["metadata"]["uid"] != "mine" and len(a["metadata"]["uid"]) == 36
    assert a["metadata"]["generation"] == 1 and a["metadata"]["creationTimestamp"].endswith("Z")
    assert isinstance(a["metadata"]["resourceVersion"], str)
    assert rv(a) < rv(cm) < rv(b)
    listed = h.get(f"{W}/namespaces/{ns}/widgets")
    assert listed["kind"] == "WidgetList" and int(listed["metadata"]["resourceVersion"]) >= rv(b)
    assert all(i["apiVersion"] == "example.com/v1" and i["kind"] == "Widget" for i in listed["items"])


def test_create_of_an_existing_name_is_409_already_exists(h: Http, ns: str) -> None:
    h.create(f"{W}/namespaces/{ns}/widgets", widget("dup"))
    status, body, _ = h.call("POST", f"{W}/namespaces/{ns}/widgets", widget("dup"))
    assert (status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'widgets.example.com "dup" already exists'


def test_get_of_a_missing_object_is_404_naming_the_qualified_resource(h: Http, ns: str) -> None:
    status, body, _ = h.call("GET", f"{W}/namespaces/{ns}/widgets/nope")
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'widgets.example.com "nope" not found')
    assert body["details"] == {"name": "nope", "group": "example.com", "kind": "widgets"}


def test_create_in_a_missing_namespace_is_404(h: Http) -> None:
    status, body, _ = h.call("POST", f"{W}/namespaces/no-such-ns/widgets", widget("x"))
    assert status == 404 and body["message"] == 'namespaces "no-such-ns" not found'


def test_generate_name_gets_five_random_characters(h: Http, ns: str) -> None:
    made = h.create(f"{W}/namespaces/{ns}/widgets", {**widget(""), "metadata": {"generateName": "gen-"}})
    assert made["metadata"]["name"].startswith("gen-") and len(made["metadata"]["name"]) == 9


def test_update_with_a_stale_resource_version_is_409_conflict(h: Http, ns: str) -> None:
    a = h.create(f"{W}/namespaces/{ns}/widgets", widget("c"))
    h.ok("PUT", f"{W}/namespaces/{ns}/widgets/c", {**a, "spec": {"size": 2}})
    status, body, _ = h.call("PUT", f"{W}/namespaces/{ns}/widgets/c", {**a, "spec": {"size": 3}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on widgets.example.com "c": the object has been '
                                      "modified")


def test_update_without_resource_version_is_422_for_custom_resources_but_allowed_for_configmaps(h: Http,
                                                                                                 ns: str) -> None:
    a = h.create(f"{W}/namespaces/{ns}/widgets", widget("norv"))
    del a["metadata"]["resourceVersion"]
    status, body, _ = h.call("PUT", f"{W}/namespaces/{ns}/widgets/norv", a)
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    cm = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "u"}})
    del cm["metadata"]["resourceVersion"]
    h.ok("PUT", f"/api/v1/namespaces/{ns}/configmaps/u", {**cm, "data": {"a": "b"}})


def test_a_merge_patch_carrying_a_stale_resource_version_is_a_conflict(h: Http, ns: str) -> None:
    a = h.create(f"{W}/namespaces/{ns}/widgets", widget("pre"))
    h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/pre", {"spec": {"size": 2}}, ctype="application/merge-patch+json")
    status, _, _ = h.call("PATCH", f"{W}/namespaces/{ns}/widgets/pre",
                          {"metadata": {"resourceVersion": a["metadata"]["resourceVersion"]}, "spec": {"size": 3}},
                          ctype="application/merge-patch+json")
    assert status == 409


def test_generation_follows_spec_changes_only(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/g"
    h.create(f"{W}/namespaces/{ns}/widgets", widget("g"))
    merge = "application/merge-patch+json"
    labelled = h.ok("PATCH", path, {"metadata": {"labels": {"x": "y"}}}, ctype=merge)
    assert labelled["metadata"]["generation"] == 1
    status_written = h.ok("PATCH", f"{path}/status", {"status": {"phase": "Ready"}}, ctype=merge)
    assert status_written["metadata"]["generation"] == 1 and status_written["status"] == {"phase": "Ready"}
    spec_changed = h.ok("PATCH", path, {"spec": {"size": 5}}, ctype=merge)
    assert spec_changed["metadata"]["generation"] == 2


def test_generation_of_a_resource_without_status_subresource_counts_status_too(h: Http) -> None:
    name = unique("gad")
    h.create(f"{W}/gadgets", {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name},
                              "spec": {"size": 1}})
    got = h.ok("PATCH", f"{W}/gadgets/{name}", {"status": {"phase": "x"}}, ctype="application/merge-patch+json")
    assert got["metadata"]["generation"] == 2 and got["status"] == {"phase": "x"}
    status, _, _ = h.call("GET", f"{W}/gadgets/{name}/status")
    assert status == 404


def test_status_subresource_ignores_spec_and_the_main_resource_ignores_status(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/s"
    made = h.create(f"{W}/namespaces/{ns}/widgets", {**widget("s"), "status": {"phase": "Set-on-create"}})
    assert "status" not in made
    cur = h.ok("PUT", f"{path}/status", {**made, "spec": {"size": 9}, "status": {"phase": "Ready"}})
    assert cur["spec"]["size"] == 1 and cur["status"]["phase"] == "Ready"
    cur = h.ok("PUT", path, {**cur, "spec": {"size": 4}, "status": {"phase": "Ignored"}})
    assert cur["spec"]["size"] == 4 and cur["status"]["phase"] == "Ready"


def test_a_write_that_changes_nothing_keeps_the_resource_version(h: Http, ns: str) -> None:
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("same"))
    again = h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/same", {"spec": {"size": 1}},
                 ctype="application/merge-patch+json")
    assert again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


def test_dry_run_answers_as_if_written_and_stores_nothing(h: Http, ns: str) -> None:
    got = h.create(f"{W}/namespaces/{ns}/widgets", widget("dry"), params={"dryRun": "All"})
    assert got["metadata"]["name"] == "dry" and got["metadata"]["uid"]
    assert h.call("GET", f"{W}/namespaces/{ns}/widgets/dry")[0] == 404
    h.create(f"{W}/namespaces/{ns}/widgets", widget("dry2"))
    h.ok("DELETE", f"{W}/namespaces/{ns}/widgets/dry2", params={"dryRun": "All"})
    h.get(f"{W}/namespaces/{ns}/widgets/dry2")


def test_schema_violations_are_422_invalid_naming_the_field(h: Http, ns: str) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"size": 0}, "spec.size", "should be greater than or equal to 1"),
        ({"size": "big"}, "spec.size", "must be of type integer"),
        ({"size": 1, "color": "green"}, "spec.color", 'Unsupported value: "green"'),
        ({}, "spec.size", "Required value"),
    ]
    for n, (spec, field, text) in enumerate(cases):
        status, body, _ = h.call("POST", f"{W}/namespaces/{ns}/widgets", {**widget(f"bad{n}"), "spec": spec})
        assert (status, body["reason"]) == (422, "Invalid"), body
        assert body["details"]["causes"][0]["field"] == field and text in body["message"], body["message"]
        assert body["message"].startswith(f'Widget.example.com "bad{n}" is invalid: {field}')


def test_unknown_fields_are_pruned_and_field_validation_decides_warn_or_refuse(h: Http, ns: str) -> None:
    body = {**widget("p"), "spec": {"size": 1, "extra": 1, "free": {"anything": {"goes": 1}}}}
    status, err, _ = h.call("POST", f"{W}/namespaces/{ns}/widgets", body, params={"fieldValidation": "Strict"})
    assert status == 400 and err["message"] == 'strict decoding error: unknown field "spec.extra"'
    status, made, headers = h.call("POST", f"{W}/namespaces/{ns}/widgets", body, params={"fieldValidation": "Warn"})
    assert status == 201 and 'unknown field \\"spec.extra\\"' in headers["warning"]
    assert made["spec"] == {"size": 1, "free": {"anything": {"goes": 1}}}


def test_strategic_merge_patch_on_a_custom_resource_is_415(h: Http, ns: str) -> None:
    h.create(f"{W}/namespaces/{ns}/widgets", widget("smp"))
    status, body, _ = h.call("PATCH", f"{W}/namespaces/{ns}/widgets/smp", {"spec": {"size": 2}},
                             ctype="application/strategic-merge-patch+json")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    assert "application/apply-patch+yaml" in body["message"]


def test_json_patch_applies_operations_and_a_failed_test_is_422(h: Http, ns: str) -> None:
    h.create(f"{W}/namespaces/{ns}/widgets", widget("jp"))
    path, jp = f"{W}/namespaces/{ns}/widgets/jp", "application/json-patch+json"
    got = h.ok("PATCH", path, [{"op": "test", "path": "/spec/size", "value": 1},
                               {"op": "replace", "path": "/spec/size", "value": 3},
                               {"op": "add", "path": "/metadata/labels", "value": {}},
                               {"op": "add", "path": "/metadata/labels/example.com~1x", "value": "y"}], ctype=jp)
    assert got["spec"]["size"] == 3 and got["metadata"]["labels"] == {"example.com/x": "y"}
    status, body, _ = h.call("PATCH", path, [{"op": "test", "path": "/spec/size", "value": 1}], ctype=jp)
    assert status == 422 and body["kind"] == "Status"


def test_cluster_scoped_custom_resources_and_every_served_version_share_objects(h: Http) -> None:
    name = unique("multi")
    h.create(f"{W}/gadgets", {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name},
                              "spec": {"size": 2}})
    other = h.get(f"/apis/example.com/v2beta1/gadgets/{name}")
    assert other["apiVersion"] == "example.com/v2beta1" and other["spec"]["size"] == 2
    assert "namespace" not in other["metadata"]


def test_table_output_uses_printer_columns_and_honours_priority(h: Http, ns: str) -> None:
    h.create(f"{W}/namespaces/{ns}/widgets", {**widget("t", size=7), "spec": {"size": 7, "color": "red"}})
    h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/t/status", {"status": {"phase": "Ready"}},
         ctype="application/merge-patch+json")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table, headers = h.call("GET", f"{W}/namespaces/{ns}/widgets", headers={"Accept": accept})
    assert status == 200 and headers["content-type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    cols = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert cols == [("Name", 0), ("Size", 0), ("Phase", 0), ("Color", 1), ("Age", 0)]
    row = table["rows"][0]
    assert row["cells"][:4] == ["t", 7, "Ready", "red"] and row["cells"][4].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["namespace"] == ns


def test_pod_tables_print_ready_status_restarts_and_age(h: Http, ns: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}
    h.create(f"/api/v1/namespaces/{ns}/pods", pod)
    h.ok("PATCH", f"/api/v1/namespaces/{ns}/pods/p/status",
         {"status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": True, "restartCount": 2}]}},
         ctype="application/strategic-merge-patch+json")
    _, table, _ = h.call("GET", f"/api/v1/namespaces/{ns}/pods/p",
                         headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["p", "1/2", "Running", 2]


def test_errors_for_unknown_paths_and_methods_are_status_objects(h: Http) -> None:
    status, body, _ = h.call("GET", "/apis/nope.example.com/v1/things")
    assert (status, body["kind"], body["message"]) == (404, "Status", "the server could not find the requested resource")
    status, body, _ = h.call("POST", "/version", {})
    assert (status, body["reason"]) == (405, "MethodNotAllowed")


def test_startup_is_under_two_seconds(tmp_path: Any) -> None:
    import time

    t0 = time.monotonic()
    server = ApiServer(dir=tmp_path / "s", port=0)
    from tests.apiserver.conftest import free_port

    server.port = free_port()
    try:
        server.start()
        assert time.monotonic() - t0 < 2.0
    finally:
        server.kill()


def test_unknown_fields_of_built_in_kinds_follow_field_validation(h: Http, ns: str) -> None:
    pod = {"metadata": {"name": "typo"}, "spec": {"contianers": [], "containers": [
        {"name": "a", "image": "x", "imagePullPolcy": "Always"}]}}
    status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/pods", pod, params={"fieldValidation": "Strict"})
    assert status == 400 and body["message"] == ('strict decoding error: unknown field "spec.contianers", '
                                                 'unknown field "spec.containers[0].imagePullPolcy"')
    status, made, headers = h.call("POST", f"/api/v1/namespaces/{ns}/pods", pod, params={"fieldValidation": "Warn"})
    assert status == 201 and "contianers" not in made["spec"] and "spec.contianers" in headers["warning"]
    status, _, _ = h.call("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "c"}, "dta": {}},
                          params={"fieldValidation": "Strict"})
    assert status == 400


def test_label_keys_values_and_annotation_sizes_are_validated(h: Http, ns: str) -> None:
    for meta in ({"labels": {"-k": "v"}}, {"labels": {"a/b/c": "v"}}, {"labels": {"k": "bad value"}},
                 {"annotations": {"a": "x" * 262_145}}):
        status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "m", **meta}})
        assert (status, body["reason"]) == (422, "Invalid"), meta
        assert body["message"].startswith('ConfigMap "m" is invalid: metadata.'), body["message"]


def test_objects_over_the_etcd_limit_and_bodies_over_3_mib_are_413(h: Http, ns: str) -> None:
    big = {"metadata": {"name": "big"}, "data": {f"k{i}": "x" * 1000 for i in range(1700)}}
    status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/configmaps", big)
    assert (status, body["reason"]) == (413, "RequestEntityTooLarge")
    huge = {"metadata": {"name": "huge"}, "data": {f"k{i}": "x" * 1000 for i in range(3300)}}
    status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/configmaps", huge)
    assert status == 413 and body["message"] == "Request entity too large: limit is 3145728"
    assert h.call("GET", f"/api/v1/namespaces/{ns}/configmaps/big")[0] == 404


def _causes(body: dict[str, Any]) -> list[str]:
    return [c["field"] for c in body["details"]["causes"]]


def test_status_patches_keep_the_spec_and_generation_as_stored(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/w"
    made = h.create(f"{W}/namespaces/{ns}/widgets", {**widget("w", 3), "spec": {"size": 3, "color": "red"}})
    for phase in ("Applying", "Ready"):
        cur = h.ok("PATCH", f"{path}/status", {"status": {"phase": phase}}, ctype=MERGE)
        assert cur["spec"] == {"size": 3, "color": "red"} and cur["status"] == {"phase": phase}
        assert cur["metadata"]["generation"] == 1 and rv(cur) > rv(made)
    assert h.get(path)["spec"] == {"size": 3, "color": "red"}


def test_after_the_schema_tightens_writes_that_keep_a_now_invalid_spec_are_still_422(
    h: Http, ns: str
) -> None:
    path = f"{W}/namespaces/{ns}/widgets/big"
    h.create(f"{W}/namespaces/{ns}/widgets", widget("big", 8))
    h.ok("PATCH", f"{path}/status", {"status": {"phase": "Ready"}}, ctype=MERGE)  # judged by the first schema
    tighter = crd("example.com", "widgets", "Widget")
    tighter["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"][
        "maximum"
    ] = 5
    stored_crd = h.get(f"{CRDS}/widgets.example.com")
    h.ok("PUT", f"{CRDS}/widgets.example.com", {**tighter, "metadata": stored_crd["metadata"]})
    status, body, _ = h.call("PATCH", f"{path}/status", {"status": {"phase": "Again"}}, ctype=MERGE)
    assert (status, _causes(body)) == (422, ["spec.size"]), body
    assert "should be less than or equal to 5" in body["message"]
    cur = h.get(path)
    status, body, _ = h.call("PUT", path, cur)
    assert (status, _causes(body)) == (422, ["spec.size"]), body
    status, body, _ = h.call("PATCH", path, {"metadata": {"labels": {"a": "b"}}}, ctype=MERGE)
    assert (status, _causes(body)) == (422, ["spec.size"]), body
    fixed = h.ok("PATCH", path, {"spec": {"size": 5}}, ctype=MERGE)
    assert fixed["spec"] == {"size": 5} and fixed["status"] == {"phase": "Ready"}


def test_an_update_equal_to_the_stored_spec_but_with_other_json_types_is_judged(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/one"
    made = h.create(f"{W}/namespaces/{ns}/widgets", widget("one", 1))
    h.ok("PATCH", f"{path}/status", {"status": {"phase": "Ready"}}, ctype=MERGE)
    for same_in_python in (1.0, True):
        cur = h.get(path)
        status, body, _ = h.call("PUT", path, {**cur, "spec": {"size": same_in_python}})
        assert (status, _causes(body)) == (422, ["spec.size"]), (same_in_python, body)
        assert "must be of type integer" in body["message"]
    assert h.get(path)["spec"] == made["spec"] == {"size": 1}


def test_an_unknown_field_added_beside_unchanged_ones_is_pruned_with_a_warning(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/p"
    h.create(f"{W}/namespaces/{ns}/widgets", widget("p", 2))
    h.ok("PATCH", f"{path}/status", {"status": {"phase": "Ready"}}, ctype=MERGE)
    cur = h.get(path)
    status, got, headers = h.call("PUT", path, {**cur, "spec": {"size": 2, "extra": 1}})
    assert status == 200 and 'unknown field \\"spec.extra\\"' in headers["warning"]
    assert got["spec"] == {"size": 2}
    status, body, _ = h.call(
        "PUT", path, {**got, "spec": {"size": 2, "extra": 1}}, params={"fieldValidation": "Strict"}
    )
    assert status == 400 and body["message"] == 'strict decoding error: unknown field "spec.extra"'


def test_later_writes_do_not_change_the_versions_watchers_already_got(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/v"
    made = h.create(
        f"{W}/namespaces/{ns}/widgets", {**widget("v", 3), "spec": {"size": 3, "free": {"a": [1]}}}
    )
    h.ok("PATCH", f"{path}/status", {"status": {"phase": "Ready"}}, ctype=MERGE)
    h.ok(
        "PATCH",
        path,
        [
            {"op": "replace", "path": "/spec/size", "value": 4},
            {"op": "add", "path": "/spec/free/a/-", "value": 2},
        ],
        ctype=JSON_PATCH,
    )
    h.ok("PATCH", f"{path}/status", {"status": {"phase": "Done"}}, ctype=MERGE)
    h.ok("PATCH", path, {"metadata": {"labels": {"x": "y"}}}, ctype=MERGE)
    w = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion=str(rv(made) - 1))
    got = w.wait_for(5)
    w.close()
    seen = [(t, o["spec"], o.get("status"), o["metadata"].get("labels")) for t, o in got]
    assert seen == [
        ("ADDED", {"size": 3, "free": {"a": [1]}}, None, None),
        ("MODIFIED", {"size": 3, "free": {"a": [1]}}, {"phase": "Ready"}, None),
        ("MODIFIED", {"size": 4, "free": {"a": [1, 2]}}, {"phase": "Ready"}, None),
        ("MODIFIED", {"size": 4, "free": {"a": [1, 2]}}, {"phase": "Done"}, None),
        ("MODIFIED", {"size": 4, "free": {"a": [1, 2]}}, {"phase": "Done"}, {"x": "y"}),
    ]
    assert [o["metadata"]["generation"] for _, o in got] == [1, 1, 2, 2, 2]
