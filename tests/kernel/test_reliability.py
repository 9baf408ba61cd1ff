"""Reliability under faults (issue 8): mnp deployed from deploy/ keeps its promises while parts break.

One cluster for the module (fault_scenarios.Bed) and one prober running all along: every ~75 ms a
real TCP flow that the policy allows (cli → srv:8080) and two it denies (other → srv:8080, cli →
srv:9090). Each test breaks one thing and asserts, from the prober's samples over the test's window:
no denied flow ever passed, the allowed flow was never cut (or, when its pod is re-created, comes
back), the change made around the fault landed (ruleset Applied at its generation, the ports in the
table), and `mnp local wait` converges (policy Enforced, every ruleset Applied).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_scenarios import ALLOWED, DENIED_PEER, DENIED_PORT, SCENARIOS, Bed, Figures, bed
from prober import describe, passes

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture(scope="module")
def b() -> Iterator[Bed]:
    root = Path(tempfile.mkdtemp(prefix="mnp", dir="/tmp"))
    try:
        with bed(root) as it:
            yield it
        left = it.cluster.leftovers()
        assert not left, f"left behind by the cluster in {root}: {left}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(b: Bed, scenario: str) -> Figures:
    f = SCENARIOS[scenario](b)
    print(f.row())
    assert not f.problems, f"{f.scenario}:\n" + "\n".join(f.problems)
    return f


def test_the_prober_saw_the_denied_flows_pass_before_the_policy_and_sees_them_blocked_now(b: Bed) -> None:
    before = b.prober.snapshot()
    assert passes(before, DENIED_PEER) and passes(before, DENIED_PORT), "without a policy both flows pass"
    now = time.monotonic()
    time.sleep(1)
    after = b.prober.snapshot(now)
    assert passes(after, ALLOWED) and not passes(after, DENIED_PEER) and not passes(after, DENIED_PORT)


def test_a_hundred_policy_edits_in_ten_seconds_never_cut_the_allowed_flow_nor_pass_a_denied_one(
    b: Bed,
) -> None:
    f = run(b, "churn")
    assert f.allowed_failures == 0 and f.converge_s is not None


def test_an_agent_killed_while_the_policy_changes_keeps_enforcing_and_applies_the_change_after_restart(
    b: Bed,
) -> None:
    run(b, "agent")


def test_the_leader_controller_killed_hands_over_and_a_later_edit_is_enforced(b: Bed) -> None:
    f = run(b, "controller")
    assert f.takeover_s is not None


def test_enforcement_goes_on_while_the_api_server_is_killed_and_everything_catches_up_after_restart(
    b: Bed,
) -> None:
    run(b, "apiserver")


def test_a_containerd_restart_keeps_the_tables_and_changes_land_during_and_after_it(b: Bed) -> None:
    run(b, "containerd")


def test_a_peer_pod_recreated_with_a_new_address_is_allowed_and_its_old_address_no_longer_is(b: Bed) -> None:
    run(b, "pod")


def test_the_policed_pod_recreated_never_lets_a_denied_flow_in_while_it_starts(b: Bed) -> None:
    run(b, "policed")


def test_no_denied_flow_passed_at_any_sample_since_the_policy_was_first_enforced(b: Bed) -> None:
    samples = b.prober.snapshot(b.enforced_at)
    denied = passes(samples, DENIED_PEER) + passes(samples, DENIED_PORT)
    assert len(samples) > 1000 and not denied, describe(denied)
