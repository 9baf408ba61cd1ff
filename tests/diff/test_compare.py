"""`mnp diff`'s pure part: live objects + policy files → the unified diffs of the rulesets that change."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mnp.compiler.compile import CompileOptions
from mnp.controller.plan import desired_rulesets
from mnp.diff.compare import Live, canonical_yaml, diff_rulesets
from mnp.offline import Document, ManifestError
from tests.builders import compile_objs, nad, namespace, pod, policy, snapshot

NET = "default/net-a"
DB = policy(
    "db",
    {
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"protocol": "TCP", "port": 5432}],
            }
        ],
    },
)
PODS = [
    pod("web", labels={"app": "web"}, nets={NET: ("net1", ["192.0.2.10"])}),
    pod("db", labels={"app": "db"}, nets={NET: ("net1", ["192.0.2.11"])}),
    pod("cache", labels={"app": "cache"}, nets={NET: ("net1", ["192.0.2.12"])}, node="node-2"),
]


def as_stored(obj: dict[str, Any], i: int) -> dict[str, Any]:
    """A ruleset as the API server returns it: bookkeeping, status, owner, keys in another order."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update(
        {
            "resourceVersion": str(100 + i),
            "uid": f"u{i}",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "mnp-controller", "operation": "Update"}],
        }
    )
    stored["spec"] = dict(reversed(list(stored["spec"].items())))
    stored["status"] = {"observedGeneration": 3, "conditions": [{"type": "Applied", "status": "True"}]}
    return dict(reversed(list(stored.items())))


def live_cluster(*policies: dict[str, Any], networks: tuple[dict[str, Any], ...] = (nad("net-a"),)) -> Live:
    """A converged cluster: its rulesets are what the controller wrote for its policies."""
    objs = [namespace("default"), *networks, *PODS, *policies]
    desired = desired_rulesets(compile_objs(objs).rulesets, snapshot(objs).pods)
    rulesets = [as_stored(obj, i) for i, obj in enumerate(desired.values())]
    return Live(PODS, [namespace("default")], networks, policies, rulesets)


def diff(live: Live, *docs: dict[str, Any], namespace: str | None = None) -> Any:
    documents = [Document(f"policies.yaml#{i}", d) for i, d in enumerate(docs, start=1)]
    return diff_rulesets(live, documents, CompileOptions(), namespace)


def edited(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"].update(spec)
    return out


def test_the_live_policy_applied_again_changes_nothing() -> None:
    result = diff(live_cluster(DB), DB)
    assert result.text == ""
    assert not result.changed


def test_server_bookkeeping_owner_status_and_key_order_are_not_differences() -> None:
    live = live_cluster(DB)
    assert "status" in live.rulesets[0] and "managedFields" in live.rulesets[0]["metadata"]
    assert diff(live, DB).text == ""


def test_a_label_someone_else_added_to_a_ruleset_is_kept_as_the_controller_keeps_it() -> None:
    live = live_cluster(DB)
    live.rulesets[0]["metadata"]["labels"]["team"] = "blue"
    assert diff(live, DB).text == ""
    edit = copy.deepcopy(DB)
    edit["spec"]["ingress"][0]["ports"][0]["port"] = 5433
    text = diff(live, edit).text
    assert "+      - port: 5433" in text
    assert "team" not in text


def test_an_edited_port_shows_the_old_and_new_port_lines_of_that_ruleset_only() -> None:
    edit = copy.deepcopy(DB)
    edit["spec"]["ingress"][0]["ports"][0]["port"] = 5433
    result = diff(live_cluster(DB), edit)
    lines = result.text.splitlines()
    assert lines[:2] == ["--- live/default/db", "+++ applied/default/db"]
    assert "-      - port: 5432" in lines
    assert "+      - port: 5433" in lines
    assert sum(1 for line in lines if line.startswith(("-", "+")) and line[:3] not in ("---", "+++")) == 2
    assert result.changed


def test_an_edited_peer_shows_the_pod_that_is_no_longer_allowed_and_the_one_that_is() -> None:
    edit = copy.deepcopy(DB)
    edit["spec"]["ingress"][0]["from"] = [{"podSelector": {"matchLabels": {"app": "cache"}}}]
    text = diff(live_cluster(DB), edit).text
    assert "-      - cidr: 192.0.2.10/32" in text
    assert "-        pod: default/web" in text
    assert "+      - cidr: 192.0.2.12/32" in text
    assert "+        pod: default/cache" in text


def test_a_new_policy_adds_the_rulesets_of_the_pods_it_selects_against_dev_null() -> None:
    web = policy("web", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]})
    text = diff(live_cluster(DB), DB, web).text
    assert text.startswith("--- /dev/null\n+++ applied/default/web\n@@ -0,0 +1,")
    body = text.split("\n", 3)[3].splitlines()
    assert all(line.startswith("+") for line in body)
    assert "+kind: PodNetworkRuleset" in body
    assert "+    mnp.dev/node: node-1" in body
    assert "+  - default/web" in body


def test_a_policy_that_no_longer_selects_a_pod_removes_its_ruleset_to_dev_null() -> None:
    narrowed = edited(DB, podSelector={"matchLabels": {"app": "nothing"}})
    text = diff(live_cluster(DB), narrowed).text
    assert text.startswith("--- live/default/db\n+++ /dev/null\n@@ -1,")
    assert "-kind: PodNetworkRuleset" in text
    assert "status" not in text and "resourceVersion" not in text


def test_diffs_come_in_namespace_and_name_order_whatever_the_file_order() -> None:
    everyone = policy("all", {"podSelector": {}, "policyTypes": ["Ingress"]})
    cache = policy("cache", {"podSelector": {"matchLabels": {"app": "cache"}}, "policyTypes": ["Egress"]})
    forward = diff(live_cluster(), everyone, cache).text
    backward = diff(live_cluster(), cache, everyone).text
    assert forward == backward
    heads = [line for line in forward.splitlines() if line.startswith("+++")]
    assert heads == ["+++ applied/default/cache", "+++ applied/default/db", "+++ applied/default/web"]


def test_a_document_without_namespace_goes_to_default_or_to_the_namespace_flag() -> None:
    bare = copy.deepcopy(DB)
    del bare["metadata"]["namespace"]
    assert diff(live_cluster(DB), bare).text == ""
    # In another namespace it is a second policy that selects nothing there: nothing changes either.
    assert diff(live_cluster(DB), bare, namespace="other").text == ""
    narrowed = edited(bare, podSelector={"matchLabels": {"app": "nothing"}})
    assert "+++ /dev/null" in diff(live_cluster(DB), narrowed).text
    assert diff(live_cluster(DB), narrowed, namespace="other").text == ""


def test_a_namespace_that_contradicts_the_namespace_flag_is_an_error_naming_the_document() -> None:
    with pytest.raises(ManifestError, match=r"policies.yaml#1: metadata.namespace: 'default' does not match"):
        diff(live_cluster(DB), DB, namespace="other")


@pytest.mark.parametrize("kind", ["Pod", "Namespace", "PodNetworkRuleset", "ConfigMap"])
def test_a_kind_other_than_policies_and_networks_is_an_error_naming_file_and_document(kind: str) -> None:
    other = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}}
    with pytest.raises(ManifestError, match=rf"policies.yaml#2: kind: {kind} cannot be diffed"):
        diff(live_cluster(DB), DB, other)


def test_the_same_policy_twice_in_the_files_is_an_error_naming_both_documents() -> None:
    also = r"policies.yaml#2: MultiNetworkPolicy default/db is also in policies.yaml#1"
    with pytest.raises(ManifestError, match=also):
        diff(live_cluster(DB), DB, DB)


def test_a_network_in_the_files_replaces_the_live_one() -> None:
    text = diff(live_cluster(DB), nad("net-a", cni_type="bridge")).text
    assert text.startswith("--- live/default/db\n+++ /dev/null\n")  # bridge networks are not policed


def test_a_problem_in_a_file_is_a_warning_led_by_its_document() -> None:
    bad = edited(DB, ingress=[{"ports": [{"protocol": "TCP", "port": 443, "endPort": 80}]}])
    result = diff(live_cluster(DB), bad)
    assert any(
        w.startswith("policies.yaml#1: default/db: spec.ingress[0].ports[0].endPort") for w in result.warnings
    ), result.warnings


def test_canonical_yaml_keeps_what_the_controller_manages_and_drops_the_rest() -> None:
    stored = live_cluster(DB).rulesets[0]
    text = canonical_yaml(stored)
    assert text.splitlines()[:3] == ["apiVersion: mnp.dev/v1alpha1", "kind: PodNetworkRuleset", "metadata:"]
    for dropped in ("status", "resourceVersion", "uid: u", "managedFields", "ownerReferences", "generation"):
        assert dropped not in text
    assert canonical_yaml(stored) == canonical_yaml(copy.deepcopy(stored))
