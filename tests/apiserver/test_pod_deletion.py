"""Graceful pod deletion: a pod bound to a node stays Terminating for its grace period until its
kubelet deletes it with gracePeriodSeconds=0, as on a real cluster (pod strategy CheckGracefulDelete,
rest.BeforeDelete); unbound and terminal pods go at once."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apiserver.conftest import Kubectl, pod, running_apiserver, unique
from tests.apiserver.test_semantics_support import Http, namespace


@pytest.fixture
def h() -> Iterator[Http]:
    with running_apiserver() as server:
        yield Http(server)


@pytest.fixture
def ns(h: Http) -> str:
    return namespace(h, unique("grace"))


def pods_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def make_pod(h: Http, ns: str, name: str, *, node: str | None = "node-1", **spec: Any) -> dict[str, Any]:
    body = pod(name, ns, node=node or "node-1")
    if node is None:
        del body["spec"]["nodeName"]
    body["spec"].update(spec)
    return h.create(pods_path(ns), body)  # type: ignore[no-any-return]


def seconds_between(since: str, until: str) -> float:
    parse = datetime.datetime.fromisoformat
    return (parse(until.replace("Z", "+00:00")) - parse(since.replace("Z", "+00:00"))).total_seconds()


def test_deleting_a_bound_pod_marks_it_terminating_for_its_termination_grace_period(h: Http, ns: str) -> None:
    make_pod(h, ns, "p", terminationGracePeriodSeconds=45)
    w = h.watch(pods_path(ns), resourceVersion="0")
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    deleting = h.ok("DELETE", f"{pods_path(ns)}/p")
    meta = deleting["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 45
    assert 44 <= seconds_between(before.strftime("%Y-%m-%dT%H:%M:%SZ"), meta["deletionTimestamp"]) <= 47
    assert h.get(f"{pods_path(ns)}/p")["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
    w.wait_for(2)
    assert w.names() == [("ADDED", "p"), ("MODIFIED", "p")]
    w.close()


def test_a_pod_without_a_termination_grace_period_gets_thirty_seconds(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    assert h.ok("DELETE", f"{pods_path(ns)}/p")["metadata"]["deletionGracePeriodSeconds"] == 30


def test_the_grace_period_of_the_request_wins_as_query_parameter_or_delete_options(h: Http, ns: str) -> None:
    make_pod(h, ns, "q")
    make_pod(h, ns, "b")
    got = h.ok("DELETE", f"{pods_path(ns)}/q", params={"gracePeriodSeconds": "7"})
    assert got["metadata"]["deletionGracePeriodSeconds"] == 7
    got = h.ok("DELETE", f"{pods_path(ns)}/b", {"kind": "DeleteOptions", "gracePeriodSeconds": 9})
    assert got["metadata"]["deletionGracePeriodSeconds"] == 9


def test_a_later_delete_may_only_shorten_the_grace_period(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    first = h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 20})["metadata"]
    longer = h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 60})["metadata"]
    assert longer["resourceVersion"] == first["resourceVersion"]
    again = h.ok("DELETE", f"{pods_path(ns)}/p")["metadata"]
    assert again["resourceVersion"] == first["resourceVersion"]
    shorter = h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 5})["metadata"]
    assert shorter["deletionGracePeriodSeconds"] == 5
    assert seconds_between(shorter["deletionTimestamp"], first["deletionTimestamp"]) == 15


def test_a_delete_with_grace_zero_removes_a_terminating_pod(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    w = h.watch(pods_path(ns), resourceVersion="0")
    h.ok("DELETE", f"{pods_path(ns)}/p")
    h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 0})
    assert h.call("GET", f"{pods_path(ns)}/p")[0] == 404
    w.wait_for(4)
    assert w.names() == [("ADDED", "p"), ("MODIFIED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
    last_update = w.events[2][1]["metadata"]
    assert last_update["deletionGracePeriodSeconds"] == 0, "the store writes grace 0, then deletes"
    w.close()


def test_a_graceless_delete_shows_watchers_the_deletion_before_the_removal(h: Http, ns: str) -> None:
    make_pod(h, ns, "unbound", node=None)
    w = h.watch(pods_path(ns), resourceVersion="0")
    gone = h.ok("DELETE", f"{pods_path(ns)}/unbound")
    assert gone["metadata"]["deletionGracePeriodSeconds"] == 0
    w.wait_for(3)
    assert w.names() == [("ADDED", "unbound"), ("MODIFIED", "unbound"), ("DELETED", "unbound")]
    assert w.events[1][1]["metadata"]["deletionTimestamp"]
    w.close()


def test_shortening_a_grace_period_never_moves_the_deletion_into_the_past(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 3})
    time.sleep(2.5)  # the shortened deadline (start + 1 s) is now in the past
    got = h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 1})["metadata"]
    assert got["deletionGracePeriodSeconds"] == 1, "a graceful request keeps the minimum period"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert abs(seconds_between(now, got["deletionTimestamp"])) <= 1


def test_unbound_and_terminal_pods_are_removed_at_once(h: Http, ns: str) -> None:
    make_pod(h, ns, "pending", node=None)
    make_pod(h, ns, "done")
    status = h.get(f"{pods_path(ns)}/done")
    status["status"] = {"phase": "Succeeded"}
    h.ok("PUT", f"{pods_path(ns)}/done/status", status)
    for name in ("pending", "done"):
        h.ok("DELETE", f"{pods_path(ns)}/{name}")
        assert h.call("GET", f"{pods_path(ns)}/{name}")[0] == 404


def test_a_pod_held_by_a_finalizer_stays_after_grace_zero_until_the_finalizer_goes(h: Http, ns: str) -> None:
    body = pod("f", ns)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    h.create(pods_path(ns), body)
    h.ok("DELETE", f"{pods_path(ns)}/f")
    held = h.ok("DELETE", f"{pods_path(ns)}/f", {"gracePeriodSeconds": 0})
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    h.ok(
        "PATCH",
        f"{pods_path(ns)}/f",
        {"metadata": {"finalizers": None}},
        ctype="application/merge-patch+json",
    )
    assert h.call("GET", f"{pods_path(ns)}/f")[0] == 404


def test_a_namespace_stays_terminating_until_its_bound_pods_are_deleted_by_their_kubelet(
    h: Http, ns: str
) -> None:
    make_pod(h, ns, "p")
    h.ok("DELETE", f"/api/v1/namespaces/{ns}")
    assert h.get(f"/api/v1/namespaces/{ns}")["status"]["phase"] == "Terminating"
    assert h.get(f"{pods_path(ns)}/p")["metadata"]["deletionGracePeriodSeconds"] == 30
    h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": 0})
    assert h.call("GET", f"/api/v1/namespaces/{ns}")[0] == 404


def test_garbage_collection_of_a_bound_pod_is_graceful_too(h: Http, ns: str) -> None:
    owner = h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "owner"}})
    body = pod("dep", ns)
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    h.create(pods_path(ns), body)
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner")
    assert h.get(f"{pods_path(ns)}/dep")["metadata"]["deletionGracePeriodSeconds"] == 30


def test_a_status_update_keeps_a_terminating_pod_and_its_grace_period(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    h.ok("DELETE", f"{pods_path(ns)}/p")
    status = h.get(f"{pods_path(ns)}/p")
    status["status"] = {"phase": "Running"}
    h.ok("PUT", f"{pods_path(ns)}/p/status", status)
    kept = h.get(f"{pods_path(ns)}/p")["metadata"]
    assert kept["deletionGracePeriodSeconds"] == 30


def test_a_negative_or_malformed_grace_period_is_one_second_or_refused(h: Http, ns: str) -> None:
    make_pod(h, ns, "p")
    assert h.call("DELETE", f"{pods_path(ns)}/p", params={"gracePeriodSeconds": "soon"})[0] == 400
    got = h.ok("DELETE", f"{pods_path(ns)}/p", {"gracePeriodSeconds": -5})
    assert got["metadata"]["deletionGracePeriodSeconds"] == 1


def test_kubectl_delete_without_waiting_leaves_a_bound_pod_terminating_and_force_removes_it(
    h: Http, ns: str, kubectl_home: Any
) -> None:
    make_pod(h, ns, "web")
    kc = Kubectl(h.server, kubectl_home)
    out = kc("delete", "pod", "web", "-n", ns, "--wait=false").stdout
    assert 'pod "web" deleted' in out
    row = kc("get", "pod", "web", "-n", ns, "--no-headers").stdout
    assert "Terminating" in row, row
    out = kc("delete", "pod", "web", "-n", ns, "--force", "--grace-period=0").stdout
    assert 'pod "web" force deleted' in out
    assert kc("get", "pod", "web", "-n", ns, check=False).returncode != 0
