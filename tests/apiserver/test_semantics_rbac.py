"""Authorization semantics: service-account tokens from TokenRequest, allowed and refused by the
stored RBAC objects, with the real server's Forbidden wording; access reviews; fault switches."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.apiserver.conftest import running_apiserver, unique
from tests.apiserver.test_semantics_support import Http, crd, install, namespace, widget

RBAC = "/apis/rbac.authorization.k8s.io/v1"
PNR_LIKE = "/apis/example.com/v1"


@pytest.fixture
def h() -> Iterator[Http]:
    with running_apiserver() as server:
        http = Http(server)
        install(http, crd("example.com", "widgets", "Widget"))
        yield http


def service_account(h: Http, ns: str, name: str) -> Http:
    h.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})
    got = h.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert got["kind"] == "TokenRequest" and got["status"]["expirationTimestamp"].endswith("Z")
    return Http(h.server, got["status"]["token"])


def bind_role(h: Http, ns: str, sa: str, rules: list[dict[str, object]], *, cluster: bool = False) -> None:
    name = unique("role")
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    if cluster:
        h.create(f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": rules})
        h.create(f"{RBAC}/clusterrolebindings", {"metadata": {"name": name}, "subjects": subject,
                                                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                             "kind": "ClusterRole", "name": name}})
    else:
        h.create(f"{RBAC}/namespaces/{ns}/roles", {"metadata": {"name": name}, "rules": rules})
        h.create(f"{RBAC}/namespaces/{ns}/rolebindings", {"metadata": {"name": name}, "subjects": subject,
                                                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                      "kind": "Role", "name": name}})


def test_a_service_account_without_bindings_is_forbidden_in_the_real_servers_words(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "nobody")
    status, body, _ = sa.call("GET", f"/api/v1/namespaces/{ns}/pods")
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (f'pods is forbidden: User "system:serviceaccount:{ns}:nobody" cannot list resource '
                               f'"pods" in API group "" in the namespace "{ns}"')
    status, body, _ = sa.call("GET", "/api/v1/nodes/n1")
    assert body["message"] == ('nodes "n1" is forbidden: User "system:serviceaccount:' + ns + ':nobody" cannot get '
                               'resource "nodes" in API group "" at the cluster scope')
    assert sa.call("GET", "/apis")[0] == 200  # discovery is open to every authenticated user


def test_a_role_grants_verbs_on_resources_and_subresources_in_its_namespace_only(h: Http) -> None:
    ns, other = namespace(h, unique("rbac")), namespace(h, unique("rbac"))
    sa = service_account(h, ns, "agent")
    bind_role(h, ns, "agent", [
        {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["example.com"], "resources": ["widgets/status"], "verbs": ["patch"]},
    ])
    h.create(f"{PNR_LIKE}/namespaces/{ns}/widgets", widget("w"))
    h.create(f"{PNR_LIKE}/namespaces/{other}/widgets", widget("w"))
    assert sa.call("GET", f"{PNR_LIKE}/namespaces/{ns}/widgets/w")[0] == 200
    assert sa.call("PATCH", f"{PNR_LIKE}/namespaces/{ns}/widgets/w/status", {"status": {"phase": "x"}},
                   ctype="application/merge-patch+json")[0] == 200
    status, body, _ = sa.call("PATCH", f"{PNR_LIKE}/namespaces/{ns}/widgets/w", {"spec": {"size": 2}},
                              ctype="application/merge-patch+json")
    assert status == 403 and 'cannot patch resource "widgets" in API group "example.com"' in body["message"]
    status, body, _ = sa.call("GET", f"{PNR_LIKE}/namespaces/{other}/widgets/w")
    assert status == 403 and body["message"].startswith('widgets.example.com "w" is forbidden')


def test_resource_names_limit_a_rule_to_named_objects(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "lease-holder")
    bind_role(h, ns, "lease-holder", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"],
                                       "resourceNames": ["mine"]}])
    for name in ("mine", "theirs"):
        h.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name}})
    assert sa.call("GET", f"/api/v1/namespaces/{ns}/configmaps/mine")[0] == 200
    assert sa.call("GET", f"/api/v1/namespaces/{ns}/configmaps/theirs")[0] == 403
    assert sa.call("GET", f"/api/v1/namespaces/{ns}/configmaps")[0] == 403


def test_a_cluster_role_binding_grants_across_namespaces_and_groups_match(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "controller")
    bind_role(h, ns, "controller", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], cluster=True)
    assert sa.call("GET", "/api/v1/pods")[0] == 200
    assert sa.call("GET", "/api/v1/namespaces/default/pods")[0] == 200
    assert sa.call("DELETE", "/api/v1/namespaces/default/pods/x")[0] == 403


def test_self_subject_access_review_answers_what_the_token_may_do(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "asker")
    bind_role(h, ns, "asker", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])

    def can(verb: str, resource: str) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource}}}
        return bool(sa.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)["status"]["allowed"])

    assert can("get", "configmaps") and not can("delete", "configmaps") and not can("get", "secrets")


def test_tokens_of_a_deleted_service_account_stop_working(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "short-lived")
    assert sa.call("GET", "/apis")[0] == 200
    h.ok("DELETE", f"/api/v1/namespaces/{ns}/serviceaccounts/short-lived")
    status, body, _ = sa.call("GET", "/apis")
    assert (status, body["reason"]) == (401, "Unauthorized")


def test_fault_switches_fail_the_next_requests_with_retry_after_then_recover(h: Http) -> None:
    h.ok("POST", "/mnp-admin/faults", {"failNext": {"count": 2, "code": 429}})
    for _ in range(2):
        status, body, headers = h.call("GET", "/api/v1/namespaces")
        assert (status, body["reason"], headers["retry-after"]) == (429, "TooManyRequests", "1")
        assert body["details"]["retryAfterSeconds"] == 1
    assert h.call("GET", "/api/v1/namespaces")[0] == 200
    h.ok("POST", "/mnp-admin/faults", {"failNext": {"count": 1, "code": 503}})
    assert h.call("GET", "/api/v1/namespaces")[0] == 503
    h.ok("POST", "/mnp-admin/faults", {"failNext": {"count": 1, "code": 500}})
    assert h.call("GET", "/api/v1/namespaces")[1]["reason"] == "InternalError"


def test_fault_latency_delays_requests_and_reset_clears_it(h: Http) -> None:
    h.ok("POST", "/mnp-admin/faults", {"latencyMs": 300})
    start = time.monotonic()
    h.get("/api/v1/namespaces")
    assert time.monotonic() - start >= 0.3
    state = h.ok("POST", "/mnp-admin/faults", {"reset": True})
    assert state == {"failNext": [], "watchGone": False, "latencyMs": 0, "bookmarkSeconds": 60.0}


def test_the_admin_endpoint_refuses_service_accounts(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "sneaky")
    bind_role(h, ns, "sneaky", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], cluster=True)
    assert sa.call("POST", "/mnp-admin/faults", {"latencyMs": 5000})[0] == 403


def test_the_admin_may_impersonate_and_rbac_then_judges_the_impersonated_user(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    service_account(h, ns, "seen-as")
    bind_role(h, ns, "seen-as", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
    as_sa = {"Impersonate-User": f"system:serviceaccount:{ns}:seen-as"}
    assert h.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers=as_sa)[0] == 200
    status, body, _ = h.call("GET", f"/api/v1/namespaces/{ns}/secrets", headers=as_sa)
    assert status == 403 and f'User "system:serviceaccount:{ns}:seen-as"' in body["message"]
    sa = service_account(h, ns, "no-impersonation")
    status, _, _ = sa.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers={"Impersonate-User": "admin"})
    assert status == 403


def test_token_review_authenticates_service_account_tokens_and_refuses_others(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "reviewed")
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    good = h.create(path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                           "spec": {"token": sa.token}})["status"]
    assert good["authenticated"] is True and good["user"]["username"] == f"system:serviceaccount:{ns}:reviewed"
    assert f"system:serviceaccounts:{ns}" in good["user"]["groups"]
    bad = h.create(path, {"spec": {"token": "nope"}})["status"]
    assert bad["authenticated"] is False
    me = h.create("/apis/authentication.k8s.io/v1/selfsubjectreviews", {})["status"]["userInfo"]
    assert "system:masters" in me["groups"]


def test_a_name_field_selector_lets_resource_names_rules_allow_list_and_watch(h: Http) -> None:
    ns = namespace(h, unique("rbac"))
    sa = service_account(h, ns, "waiter")
    bind_role(h, ns, "waiter", [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list", "watch"],
                                 "resourceNames": ["mine"]}])
    h.create(f"{PNR_LIKE}/namespaces/{ns}/widgets", widget("mine"))
    path = f"{PNR_LIKE}/namespaces/{ns}/widgets"
    assert sa.call("GET", path, params={"fieldSelector": "metadata.name=mine"})[0] == 200
    assert sa.call("GET", path, params={"fieldSelector": "metadata.name=other"})[0] == 403
    assert sa.call("GET", path)[0] == 403
    w = sa.watch(path, fieldSelector="metadata.name=mine", resourceVersion="0")
    w.wait_for(1)
    assert w.names() == [("ADDED", "mine")]
    w.close()
