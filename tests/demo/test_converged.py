"""When the demo considers its policies in force: every one Enforced=True."""

from __future__ import annotations

from typing import Any

from mnp.demo.converged import not_enforced


def policy(name: str, *conditions: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name}, "status": {"conditions": list(conditions)}}


def test_policies_enforced_everywhere_leave_nothing_to_wait_for() -> None:
    ok = policy("db", {"type": "Accepted", "status": "True"}, {"type": "Enforced", "status": "True"})
    assert not_enforced([ok]) == []


def test_a_policy_without_status_or_not_enforced_yet_is_named_with_why() -> None:
    fresh = {"metadata": {"namespace": "shop", "name": "db"}}
    partial = policy("backend", {"type": "Enforced", "status": "False", "message": "1 of 2 pods"})
    assert not_enforced([fresh, partial]) == [
        "shop/db: no Enforced condition yet",
        "shop/backend: Enforced=False 1 of 2 pods",
    ]
