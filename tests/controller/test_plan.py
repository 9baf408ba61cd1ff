"""The controller's pure decisions: which writes a pass makes, and a policy's status."""

from __future__ import annotations

import copy
from typing import Any

from mnp.api.refs import Diagnostic, ObjRef
from mnp.controller.plan import Action, desired_rulesets, plan_writes, policy_status
from tests.builders import compile_objs, nad, pod, policy, snapshot

OBJS = [
    nad("net-a"),
    pod("web", labels={"app": "web"}, nets={"default/net-a": ("net1", ["192.0.2.10"])}),
    pod("db", labels={"app": "db"}, nets={"default/net-a": ("net1", ["192.0.2.11"])}),
    policy(
        "db",
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        },
    ),
]


def _existing(desired: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    out = {}
    for i, (key, obj) in enumerate(desired.items()):
        have = copy.deepcopy(obj)
        have["metadata"].update({"resourceVersion": str(100 + i), "uid": f"u{i}", "generation": 1})
        have["status"] = {"observedGeneration": 1, "conditions": [{"type": "Applied", "status": "True"}]}
        out[key] = have
    return out


def _desired(objs: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return desired_rulesets(compile_objs(objs).rulesets, snapshot(objs).pods)


def test_a_pass_with_nothing_new_writes_nothing() -> None:
    desired = _desired(OBJS)
    assert list(desired) == [("default", "db")]
    assert plan_writes(desired, _existing(desired)) == []


def test_a_changed_spec_is_an_update_carrying_the_existing_resource_version() -> None:
    existing = _existing(_desired(OBJS))
    changed = [
        *OBJS[:2],
        pod("web", labels={"app": "web"}, nets={"default/net-a": ("net1", ["192.0.2.99"])}),
        *OBJS[2:],
    ]
    writes = plan_writes(_desired(changed[:1] + changed[2:]), existing)
    assert [(w.action, w.key) for w in writes] == [(Action.UPDATE, ("default", "db"))]
    assert writes[0].body is not None and writes[0].body["metadata"]["resourceVersion"] == "100"


def test_a_ruleset_no_policy_asks_for_is_deleted_with_a_uid_precondition_and_a_new_one_created() -> None:
    existing = _existing(_desired(OBJS))
    moved = [*OBJS[:3], policy("db", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []})]
    writes = plan_writes(_desired(moved), existing)
    assert [(w.action, w.key) for w in writes] == [
        (Action.DELETE, ("default", "db")),
        (Action.CREATE, ("default", "web")),
    ]
    assert writes[0].uid == "u0"


def test_a_lost_node_label_or_owner_is_restored_and_foreign_labels_are_kept() -> None:
    desired = _desired(OBJS)
    existing = _existing(desired)
    existing[("default", "db")]["metadata"]["labels"] = {"team": "x"}
    writes = plan_writes(desired, existing)
    assert len(writes) == 1 and writes[0].body is not None
    assert writes[0].body["metadata"]["labels"] == {"team": "x", "mnp.dev/node": "node-1"}


def _policy_raw(generation: int = 2) -> dict[str, Any]:
    raw = policy("db", {})
    raw["metadata"]["generation"] = generation
    return raw


def test_policy_status_counts_applied_rulesets_at_their_generation_only() -> None:
    existing = _existing(_desired(OBJS))
    selected = [ObjRef("default", "db", "Pod")]
    status = policy_status(_policy_raw(), selected, [], existing, "2026-11-25T00:00:00Z")
    assert (
        status["observedGeneration"],
        status["selectedPods"],
        status["enforcedPods"],
        status["failedPods"],
    ) == (2, 1, 1, 0)
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("Accepted", "True"),
        ("Enforced", "True"),
    ]
    existing[("default", "db")]["metadata"]["generation"] = 2  # the agent has not seen generation 2 yet
    pending = policy_status(_policy_raw(), selected, [], existing, "2026-11-25T00:00:01Z")
    assert pending["enforcedPods"] == 0 and pending["conditions"][1]["reason"] == "Pending"


def test_an_invalid_policy_is_not_accepted_and_the_message_names_the_field() -> None:
    problem = Diagnostic(
        ObjRef("default", "db", "MultiNetworkPolicy"),
        "spec.ingress[0].from[0].ipBlock.cidr",
        "'x' is not a CIDR",
    )
    status = policy_status(_policy_raw(), [], [problem], {}, "2026-11-25T00:00:00Z")
    accepted = status["conditions"][0]
    assert (
        accepted["status"] == "False"
        and accepted["message"] == "spec.ingress[0].from[0].ipBlock.cidr: 'x' is not a CIDR"
    )
