"""Resource addressing (mnp.kube.resources) and error mapping (mnp.kube.errors): URL paths, the names
used in messages, and Status bodies turned into the mnp exception tree."""

from __future__ import annotations

from mnp.api.errors import Conflict, Gone, NotFound
from mnp.kube.errors import AlreadyExists, Invalid, KubeApiError, error_from_status
from mnp.kube.resources import LEASES, NODES, PODS, RULESETS, Resource


def test_paths_follow_the_api_layout_for_core_groups_and_scopes() -> None:
    assert PODS.path() == "/api/v1/pods"
    assert PODS.path("web") == "/api/v1/namespaces/web/pods"
    assert PODS.path("web", "p-0", "binding") == "/api/v1/namespaces/web/pods/p-0/binding"
    assert NODES.path("ignored", "node-1") == "/api/v1/nodes/node-1"
    assert (
        RULESETS.path("web", "p-0", "status")
        == "/apis/mnp.dev/v1alpha1/namespaces/web/podnetworkrulesets/p-0/status"
    )
    assert LEASES.api_version == "coordination.k8s.io/v1" and PODS.api_version == "v1"


def test_messages_name_the_kind_and_the_object() -> None:
    assert RULESETS.describe("web", "p-0") == "PodNetworkRuleset web/p-0"
    assert NODES.describe(None, "node-1") == "Node node-1"
    assert Resource("mnp.dev", "v1alpha1", "podnetworkrulesets", True).describe("web", None) == (
        "podnetworkrulesets.mnp.dev in web"
    )


def test_the_kind_does_not_take_part_in_equality() -> None:
    assert Resource("mnp.dev", "v1alpha1", "podnetworkrulesets", True) == RULESETS
    assert len({Resource("", "v1", "pods", True), PODS}) == 1


def test_status_codes_map_to_the_mnp_exception_tree() -> None:
    status = {"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": 'pods "p" already exists'}
    taken = error_from_status(409, status, "Pod web/p")
    assert isinstance(taken, AlreadyExists) and isinstance(taken, Conflict)
    assert str(taken) == 'Pod web/p: pods "p" already exists (409 AlreadyExists)'
    assert isinstance(error_from_status(409, {"reason": "Conflict"}), Conflict)
    assert isinstance(error_from_status(404, None), NotFound)
    assert isinstance(error_from_status(410, {"reason": "Expired", "message": "too old"}), Gone)
    invalid = error_from_status(422, {"reason": "Invalid", "details": {"causes": [{"field": "spec.node"}]}})
    assert isinstance(invalid, Invalid) and invalid.details["causes"][0]["field"] == "spec.node"


def test_transient_failures_are_the_retryable_ones_and_carry_retry_after() -> None:
    busy = error_from_status(429, {"reason": "TooManyRequests", "details": {"retryAfterSeconds": 2}})
    assert busy.transient and busy.retry_after == 2.0
    assert error_from_status(503, "upstream down", retry_after=1.0).retry_after == 1.0
    assert all(error_from_status(c, None).transient for c in (500, 502, 503, 504))
    assert not any(error_from_status(c, None).transient for c in (400, 401, 403, 404, 409, 410, 422))
    bare = error_from_status(504, None)
    assert (bare.reason, bare.message) == ("Timeout", "HTTP 504")
    assert KubeApiError(0, "Unreachable", "connection refused").transient
