"""Lifecycle semantics over plain HTTPS: finalizers, ownerReference garbage collection, namespace
and CRD deletion, and durability across kill -9."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.apiserver.conftest import ApiServer, running_apiserver, unique, wait_until
from tests.apiserver.test_semantics_support import CRDS, Http, crd, install, namespace, rv, widget

W = "/apis/example.com/v1"
MERGE = "application/merge-patch+json"


@pytest.fixture
def h() -> Iterator[Http]:
    with running_apiserver() as server:
        http = Http(server)
        install(http, crd("example.com", "widgets", "Widget"))
        yield http


@pytest.fixture
def ns(h: Http) -> str:
    return namespace(h, unique("life"))


def gone(h: Http, path: str) -> bool:
    return h.call("GET", path)[0] == 404


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"]}


def test_delete_with_finalizers_sets_deletion_timestamp_and_removal_waits_for_the_last_one(h: Http, ns: str) -> None:
    path = f"{W}/namespaces/{ns}/widgets/f"
    h.create(f"{W}/namespaces/{ns}/widgets", widget("f", finalizers=["a.example.com/x", "b.example.com/y"]))
    w = h.watch(f"{W}/namespaces/{ns}/widgets", resourceVersion="0")
    deleting = h.ok("DELETE", path, {"propagationPolicy": "Background"})
    assert deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["generation"] == 2
    again = h.ok("DELETE", path)
    assert again["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
    h.ok("PATCH", path, [{"op": "remove", "path": "/metadata/finalizers/0"}], ctype="application/json-patch+json")
    assert not gone(h, path)
    h.ok("PATCH", path, {"metadata": {"finalizers": None}}, ctype=MERGE)
    assert gone(h, path)
    w.wait_for(4)
    assert [t for t, _ in w.events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    w.close()


def test_deleting_an_owner_collects_its_dependents_in_the_background(h: Http, ns: str) -> None:
    owner = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "owner"}})
    h.create(f"{W}/namespaces/{ns}/widgets", widget("dep", ownerReferences=[owner_ref(owner)]))
    other = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "other"}})
    h.create(f"{W}/namespaces/{ns}/widgets", widget("two-owners", ownerReferences=[owner_ref(owner),
                                                                                  owner_ref(other)]))
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner", {"propagationPolicy": "Background"})
    wait_until(lambda: gone(h, f"{W}/namespaces/{ns}/widgets/dep"), 5, what="dependent collected")
    kept = h.get(f"{W}/namespaces/{ns}/widgets/two-owners")
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["other"]


def test_orphan_propagation_keeps_dependents_and_drops_the_reference(h: Http, ns: str) -> None:
    owner = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "o"}})
    h.create(f"{W}/namespaces/{ns}/widgets", widget("orphan", ownerReferences=[owner_ref(owner)]))
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/o", {"propagationPolicy": "Orphan"})
    kept = h.get(f"{W}/namespaces/{ns}/widgets/orphan")
    assert "ownerReferences" not in kept["metadata"]


def test_foreground_deletion_holds_the_owner_until_dependents_are_gone(h: Http, ns: str) -> None:
    owner = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "fg"}})
    h.create(f"{W}/namespaces/{ns}/widgets", widget("held", finalizers=["example.com/hold"],
                                                   ownerReferences=[owner_ref(owner)]))
    held = h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/fg", {"propagationPolicy": "Foreground"})
    assert "foregroundDeletion" in held["metadata"]["finalizers"] and held["metadata"]["deletionTimestamp"]
    dep = h.get(f"{W}/namespaces/{ns}/widgets/held")
    assert dep["metadata"]["deletionTimestamp"]
    h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/held", {"metadata": {"finalizers": []}}, ctype=MERGE)
    assert gone(h, f"{W}/namespaces/{ns}/widgets/held") and gone(h, f"/api/v1/namespaces/{ns}/configmaps/fg")


def test_delete_preconditions_on_uid_are_409(h: Http, ns: str) -> None:
    h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "pc"}})
    status, body, _ = h.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/pc", {"preconditions": {"uid": "x"}})
    assert (status, body["reason"]) == (409, "Conflict") and "Precondition failed" in body["message"]


def test_namespace_deletion_terminates_then_removes_every_object_and_the_namespace(h: Http) -> None:
    ns = namespace(h, unique("doomed"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("plain"))
    h.create(f"{W}/namespaces/{ns}/widgets", widget("held", finalizers=["example.com/hold"]))
    h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "cm"}})
    term = h.ok("DELETE", f"/api/v1/namespaces/{ns}")
    assert term["status"]["phase"] == "Terminating"
    assert gone(h, f"{W}/namespaces/{ns}/widgets/plain") and gone(h, f"/api/v1/namespaces/{ns}/configmaps/cm")
    status, body, _ = h.call("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "late"}})
    assert (status, body["reason"]) == (403, "Forbidden") and "being terminated" in body["message"]
    assert h.get(f"/api/v1/namespaces/{ns}")["status"]["phase"] == "Terminating"
    h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/held", {"metadata": {"finalizers": None}}, ctype=MERGE)
    assert gone(h, f"/api/v1/namespaces/{ns}")


def test_deleting_a_crd_deletes_its_objects_and_stops_serving_them(h: Http, ns: str) -> None:
    install(h, crd("tmp.example.com", "blobs", "Blob"))
    h.create(f"/apis/tmp.example.com/v1/namespaces/{ns}/blobs",
             {"apiVersion": "tmp.example.com/v1", "kind": "Blob", "metadata": {"name": "b"}, "spec": {"size": 1}})
    w = h.watch(f"/apis/tmp.example.com/v1/namespaces/{ns}/blobs", resourceVersion="0")
    w.wait_for(1)
    h.ok("DELETE", f"{CRDS}/blobs.tmp.example.com")
    w.wait_for(2)
    assert w.names() == [("ADDED", "b"), ("DELETED", "b")]
    status, _, _ = h.call("GET", f"/apis/tmp.example.com/v1/namespaces/{ns}/blobs")
    assert status == 404
    install(h, crd("tmp.example.com", "blobs", "Blob"))
    assert h.get(f"/apis/tmp.example.com/v1/namespaces/{ns}/blobs")["items"] == []
    w.close()


def test_crds_get_established_and_names_accepted_conditions(h: Http) -> None:
    got = h.get(f"{CRDS}/widgets.example.com")
    conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert got["status"]["acceptedNames"]["kind"] == "Widget" and got["status"]["storedVersions"] == ["v1"]


def test_a_malformed_crd_is_422(h: Http) -> None:
    body = crd("example.com", "bad", "Bad")
    body["metadata"]["name"] = "wrong.example.com"
    status, err, _ = h.call("POST", CRDS, body)
    assert status == 422 and err["details"]["causes"][0]["field"] == "metadata.name"


def test_kill_9_loses_no_acknowledged_write_and_resource_versions_keep_increasing(tmp_path: Any) -> None:
    with running_apiserver() as server:
        h = Http(server)
        install(h, crd("example.com", "widgets", "Widget"))
        ns = namespace(h, "durable")
        last = {}
        for n in range(30):
            last = h.create(f"{W}/namespaces/{ns}/widgets", widget(f"w{n}", size=1 + n % 9))
        h.ok("DELETE", f"{W}/namespaces/{ns}/widgets/w0")
        patched = h.ok("PATCH", f"{W}/namespaces/{ns}/widgets/w1/status", {"status": {"phase": "Done"}}, ctype=MERGE)
        server.restart(crash=True)
        h = Http(server)
        items = h.get(f"{W}/namespaces/{ns}/widgets")["items"]
        assert sorted(i["metadata"]["name"] for i in items) == sorted(f"w{n}" for n in range(1, 30))
        assert h.get(f"{W}/namespaces/{ns}/widgets/w1")["status"] == {"phase": "Done"}
        after = h.create(f"{W}/namespaces/{ns}/widgets", widget("after"))
        assert rv(after) > rv(patched) > rv(last)


def test_sigterm_stops_the_server_cleanly(apiserver: ApiServer) -> None:
    assert apiserver.terminate() == 0


def test_garbage_collection_still_knows_owners_after_a_restart(apiserver: ApiServer) -> None:
    h = Http(apiserver)
    install(h, crd("example.com", "widgets", "Widget"))
    ns = namespace(h, "gc-restart")
    owner = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "owner"}})
    h.create(f"{W}/namespaces/{ns}/widgets", widget("dep", ownerReferences=[owner_ref(owner)]))
    apiserver.restart(crash=True)
    h = Http(apiserver)
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner")
    assert gone(h, f"{W}/namespaces/{ns}/widgets/dep")


def test_every_namespace_gets_a_default_service_account(h: Http) -> None:
    ns = namespace(h, unique("sa"))
    assert h.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")["metadata"]["namespace"] == ns
    assert h.get("/api/v1/namespaces/default/serviceaccounts/default")
