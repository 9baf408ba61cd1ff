"""The bad-input sweep, pure layer: malformed MultiNetworkPolicies, network-status annotations and NADs
fed to the parsers and the compiler. Each is reported naming the object and the field, nothing raises,
and nothing opens a pod: the part that cannot be understood grants nothing, and a policy whose target
selector can be read still isolates the pods it selects (README "Semantics").

tests/compiler/test_invalid_input.py has the first cases (bad CIDR, bad except, port entries, garbage
specs); this module is the full table, one row per malformed field, plus absurd sizes. The same
objects go through a real API server and `mnp controller` in tests/kernel/test_bad_input.py.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from mnp.api.cluster import parse_network, parse_pod
from mnp.api.multus import NETWORK_STATUS, parse_network_status
from mnp.api.policy import POLICY_FOR, parse_policy
from mnp.api.refs import ObjRef, Severity
from mnp.api.ruleset import Direction, Protocol, RulesetSpec, spec_from_raw, spec_to_raw
from mnp.compiler.compact import ruleset_size
from mnp.compiler.compile import CompileOptions, CompileResult, compile_rulesets
from mnp.controller.plan import policy_status
from tests.builders import compile_objs, nad, namespace, pod, policy, snapshot
from tests.oracle import direction_allows

NET = "default/net-a"
SERVER, CLIENT = "192.0.2.10", "192.0.2.11"
STATUS_FIELD = f"metadata.annotations[{NETWORK_STATUS}]"
FOR_FIELD = f"metadata.annotations[{POLICY_FOR}]"


def cluster() -> list[dict[str, Any]]:
    return [
        nad("net-a"),
        namespace("default"),
        pod("server", labels={"app": "server"}, nets={NET: ("net1", [SERVER])}, ports=[("http", 80, "TCP")]),
        pod("client", labels={"app": "client"}, nets={NET: ("net1", [CLIENT])}, ports=[("http", 80, "TCP")]),
    ]


def good_spec() -> dict[str, Any]:
    """Server ingress from the client on TCP 80, server egress to the client on TCP 80."""
    return {
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}],
    }


def spec_with(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set `value` at a dotted path of the good spec (`ingress.0.ports.0.port`); the spec itself at ""."""

    def mutate(obj: dict[str, Any]) -> None:
        if not path:
            obj["spec"] = value
            return
        *parents, last = path.split(".")
        node: Any = obj["spec"]
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def annotation(value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        obj["metadata"]["annotations"][POLICY_FOR] = value

    return mutate


# (mutation of the good policy, the field named, its severity, does the policy still isolate the server)
# "isolates" False: the target selector cannot be read, so the policy selects no pod (it cannot know
# which pods were meant); it then also grants nothing.
ING, EGR = "ingress.0", "egress.0"
CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str, Severity, bool]] = {
    "spec as a list": (spec_with("", []), "spec", Severity.ERROR, True),
    "spec as a string": (spec_with("", "all"), "spec", Severity.ERROR, True),
    "podSelector as a string": (spec_with("podSelector", "app=server"), "spec.podSelector", Severity.ERROR, False),
    "matchLabels as a list": (spec_with("podSelector.matchLabels", ["app"]), "spec.podSelector.matchLabels", Severity.ERROR, False),
    "a matchLabels value as an int": (spec_with("podSelector.matchLabels", {"app": 1}), "spec.podSelector.matchLabels", Severity.ERROR, False),
    "a matchLabels value as a list": (spec_with("podSelector.matchLabels", {"app": ["server"]}), "spec.podSelector.matchLabels", Severity.ERROR, False),
    "an unknown operator": (spec_with("podSelector.matchExpressions", [{"key": "app", "operator": "Like", "values": ["server"]}]), "spec.podSelector.matchExpressions[0].operator", Severity.ERROR, False),
    "In without values": (spec_with("podSelector.matchExpressions", [{"key": "app", "operator": "In"}]), "spec.podSelector.matchExpressions[0].values", Severity.ERROR, False),
    "Exists with values": (spec_with("podSelector.matchExpressions", [{"key": "app", "operator": "Exists", "values": ["x"]}]), "spec.podSelector.matchExpressions[0].values", Severity.ERROR, False),
    "a requirement without a key": (spec_with("podSelector.matchExpressions", [{"operator": "Exists"}]), "spec.podSelector.matchExpressions[0]", Severity.ERROR, False),
    "a peer's unknown operator": (spec_with(f"{ING}.from.0.podSelector", {"matchExpressions": [{"key": "app", "operator": "in", "values": ["client"]}]}), "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator", Severity.ERROR, True),
    "a peer's namespaceSelector value as an int": (spec_with(f"{ING}.from.0.namespaceSelector", {"matchLabels": {"team": 7}}), "spec.ingress[0].from[0].namespaceSelector.matchLabels", Severity.ERROR, True),
    "ingress as an object": (spec_with("ingress", {"from": []}), "spec.ingress", Severity.ERROR, True),
    "egress as a string": (spec_with("egress", "all"), "spec.egress", Severity.ERROR, True),
    "a null rule": (spec_with("ingress", [None]), "spec.ingress[0]", Severity.ERROR, True),
    "from as an object": (spec_with(f"{ING}.from", {"podSelector": {}}), "spec.ingress[0].from", Severity.ERROR, True),
    "an empty from entry": (spec_with(f"{ING}.from", [{}]), "spec.ingress[0].from[0]", Severity.ERROR, True),
    "a from entry with only an unknown key": (spec_with(f"{ING}.from", [{"podSelectr": {}}]), "spec.ingress[0].from[0]", Severity.ERROR, True),
    "an empty to entry": (spec_with(f"{EGR}.to", [{}]), "spec.egress[0].to[0]", Severity.ERROR, True),
    "a to entry as a string": (spec_with(f"{EGR}.to", ["client"]), "spec.egress[0].to[0]", Severity.ERROR, True),
    "ports as an object": (spec_with(f"{ING}.ports", {"port": 80}), "spec.ingress[0].ports", Severity.ERROR, True),
    "port as a list": (spec_with(f"{ING}.ports.0.port", [80]), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "port as a float": (spec_with(f"{ING}.ports.0.port", 80.0), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "a negative port": (spec_with(f"{ING}.ports.0.port", -80), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "port 0": (spec_with(f"{ING}.ports.0.port", 0), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "port 65536": (spec_with(f"{ING}.ports.0.port", 65536), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "a port name with spaces": (spec_with(f"{ING}.ports.0.port", "h ttp"), "spec.ingress[0].ports[0].port", Severity.ERROR, True),
    "endPort below port": (spec_with(f"{ING}.ports.0", {"port": 81, "endPort": 80}), "spec.ingress[0].ports[0].endPort", Severity.ERROR, True),
    "endPort above 65535": (spec_with(f"{ING}.ports.0", {"port": 80, "endPort": 65536}), "spec.ingress[0].ports[0].endPort", Severity.ERROR, True),
    "endPort with a named port": (spec_with(f"{ING}.ports.0", {"port": "http", "endPort": 90}), "spec.ingress[0].ports[0].endPort", Severity.ERROR, True),
    "endPort without a port": (spec_with(f"{ING}.ports.0", {"endPort": 90}), "spec.ingress[0].ports[0].endPort", Severity.ERROR, True),
    "an unknown protocol": (spec_with(f"{ING}.ports.0.protocol", "ICMP"), "spec.ingress[0].ports[0].protocol", Severity.ERROR, True),
    "a lowercase protocol": (spec_with(f"{ING}.ports.0.protocol", "tcp"), "spec.ingress[0].ports[0].protocol", Severity.ERROR, True),
    "an egress port 0": (spec_with(f"{EGR}.ports.0.port", 0), "spec.egress[0].ports[0].port", Severity.ERROR, True),
    "a cidr that is not one": (spec_with(f"{ING}.from.0", {"ipBlock": {"cidr": "192.0.2.11/33"}}), "spec.ingress[0].from[0].ipBlock.cidr", Severity.ERROR, True),
    "a cidr without a prefix": (spec_with(f"{ING}.from.0", {"ipBlock": {"cidr": CLIENT}}), "spec.ingress[0].from[0].ipBlock.cidr", Severity.ERROR, True),
    "ipBlock without a cidr": (spec_with(f"{ING}.from.0", {"ipBlock": {"except": ["192.0.2.0/28"]}}), "spec.ingress[0].from[0].ipBlock.cidr", Severity.ERROR, True),
    "except as a string": (spec_with(f"{ING}.from.0", {"ipBlock": {"cidr": "192.0.2.0/24", "except": "192.0.2.0/28"}}), "spec.ingress[0].from[0].ipBlock.except", Severity.ERROR, True),
    "an except that is not a cidr": (spec_with(f"{ING}.from.0", {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["x"]}}), "spec.ingress[0].from[0].ipBlock.except[0]", Severity.ERROR, True),
    "an except covering its whole block": (spec_with(f"{ING}.from.0", {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.0.0/16"]}}), "spec.ingress[0].from[0].ipBlock.except[0]", Severity.WARNING, True),
    "policyTypes as a string": (spec_with("policyTypes", "Ingress"), "spec.policyTypes", Severity.ERROR, True),
    "an unknown policyType": (spec_with("policyTypes", ["Ingress", "Both"]), "spec.policyTypes[1]", Severity.ERROR, True),
    "a lowercase policyType": (spec_with("policyTypes", ["ingress"]), "spec.policyTypes[0]", Severity.ERROR, True),
    "policy-for empty": (annotation(""), FOR_FIELD, Severity.ERROR, False),
    "policy-for only spaces": (annotation("   "), FOR_FIELD, Severity.ERROR, False),
    "policy-for a/b/c": (annotation("a/b/c"), f"{FOR_FIELD}[0]", Severity.ERROR, False),
    "policy-for with a space inside": (annotation("net a"), f"{FOR_FIELD}[0]", Severity.ERROR, False),
    "policy-for as a JSON list in the string": (annotation('["net-a"]'), f"{FOR_FIELD}[0]", Severity.ERROR, False),
    "policy-for as a list": (annotation(["net-a"]), FOR_FIELD, Severity.ERROR, False),
    "policy-for with an empty entry": (annotation("net-a,,"), f"{FOR_FIELD}[1]", Severity.ERROR, True),
}


def bad_policy(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = policy("bad", good_spec())
    mutate(obj)
    return obj


def ruleset(result: CompileResult, name: str = "server") -> RulesetSpec | None:
    return result.rulesets.get(ObjRef("default", name, "Pod"))


def allows(spec: RulesetSpec | None, direction: Direction, addr: str, port: int = 80) -> bool:
    return spec is None or direction_allows(spec, direction, "net1", addr, Protocol.TCP, port)


def concerned(field: str, isolates: bool) -> tuple[Direction, ...]:
    """The directions whose flows the bad field was about (all when the policy grants nothing)."""
    if not isolates or field == "spec":
        return (Direction.INGRESS, Direction.EGRESS)
    if field.startswith("spec.ingress"):
        return (Direction.INGRESS,)
    if field.startswith("spec.egress"):
        return (Direction.EGRESS,)
    return ()  # policyTypes, one bad network name among good ones: the rules themselves are valid


@pytest.mark.parametrize("case", CASES)
def test_each_malformed_field_is_named_and_never_opens_the_pod(case: str) -> None:
    mutate, field, severity, isolates = CASES[case]
    obj = bad_policy(mutate)
    _, problems = parse_policy(copy.deepcopy(obj))
    named = {(str(d.obj), d.field, d.severity) for d in problems}
    assert ("default/bad", field, severity) in named, problems
    assert all(d.message for d in problems)

    alone = compile_objs([*cluster(), obj])
    assert all(str(d.obj) == "default/bad" for d in alone.diagnostics), alone.diagnostics
    server = ruleset(alone)
    if isolates:
        assert server is not None and server.ingress is not None, "an invalid policy isolates its pods"
        assert server.ingress.isolated == ("net1",)
    else:
        assert server is None and alone.selected.get("default/bad") == (), "it selects nothing"
    if field.startswith("spec.policyTypes"):
        assert server is not None and server.egress is not None, "a bad policyType isolates both directions"
    # The flows the bad part was about are never granted: with a deny-all for the server beside it,
    # the client stays out (and the server stays in).
    deny = policy("deny", {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress", "Egress"]})
    both = ruleset(compile_objs([*cluster(), obj, deny]))
    for direction in concerned(field, isolates):
        assert not allows(both, direction, CLIENT), f"the bad policy opened the server's {direction}"
    # Every ruleset the compiler makes out of it is one the agent accepts.
    for spec in alone.rulesets.values():
        spec_from_raw(spec_to_raw(spec))


def test_the_good_policy_of_the_table_does_allow_the_flows_the_bad_ones_must_not() -> None:
    """The table's negative checks can fail: unmodified, the policy grants both flows."""
    good = compile_objs([*cluster(), policy("bad", good_spec())])
    assert good.diagnostics == ()
    assert allows(ruleset(good), Direction.INGRESS, CLIENT)
    assert allows(ruleset(good), Direction.EGRESS, CLIENT)
    assert not allows(ruleset(good), Direction.INGRESS, CLIENT, 81)


# ---- network-status -------------------------------------------------------------------------------

STATUSES = {
    "not JSON": ("{oops", "not JSON"),
    "JSON but an object": ('{"name": "net-a"}', "not a JSON list"),
    "JSON but a number": ("5", "not a JSON list"),
    "an entry that is a string": ('["net-a"]', "[0] is not an object"),
    "an entry without a name": ('[{"interface": "net1", "ips": ["192.0.2.20"]}]', "[0].name is missing"),
    "a name that is a number": ('[{"name": 5, "interface": "net1", "ips": ["192.0.2.20"]}]', "[0].name is missing"),
    "an interface that is no name": ('[{"name": "net-a", "interface": "net 1", "ips": ["192.0.2.20"]}]', "[0].interface 'net 1'"),
    "ips as a string": ('[{"name": "net-a", "interface": "net1", "ips": "192.0.2.20"}]', "[0].ips is not a list"),
    "ips that are not addresses": ('[{"name": "net-a", "interface": "net1", "ips": ["192.0.2.300"]}]', "[0].ips[0] '192.0.2.300'"),
    "an interface named twice": ('[{"name": "net-a", "interface": "net1", "ips": ["192.0.2.20"]}, {"name": "net-b", "interface": "net1", "ips": ["198.51.100.20"]}]', "[1].interface 'net1' appears twice"),
    "nested thousands deep": ("[" * 5000 + "]" * 5000, "nested too deeply"),
}


@pytest.mark.parametrize("case", STATUSES)
def test_a_malformed_network_status_is_refused_saying_what_is_wrong(case: str) -> None:
    value, message = STATUSES[case]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_network_status(value, "default")


@pytest.mark.parametrize("case", STATUSES)
def test_a_pod_with_a_malformed_network_status_stays_policed_and_is_no_peer(case: str) -> None:
    value, message = STATUSES[case]
    broken = pod("broken", labels={"app": "server"}, network_status=value, networks="net-a@net1")
    parsed, problems = parse_pod(broken)
    assert [(str(d.obj), d.field) for d in problems] == [("default/broken", STATUS_FIELD)]
    assert message in problems[0].message
    assert not parsed.is_peer and parsed.addresses_unknown

    everyone = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]}
    result = compile_objs([*cluster(), broken, policy("p", everyone)])
    spec = ruleset(result, "broken")
    assert spec is not None and spec.ingress is not None and spec.ingress.isolated == ("net1",)
    peers = {str(p.cidr) for r in ruleset(result).ingress.rules for p in r.peers or ()}  # type: ignore[union-attr]
    assert peers == {f"{SERVER}/32", f"{CLIENT}/32"}, "the broken pod's addresses count nowhere"


def test_a_pod_whose_annotations_are_both_unreadable_is_reported_and_never_a_peer() -> None:
    broken = pod("broken", labels={"app": "client"}, network_status="{oops", networks="[{oops")
    parsed, problems = parse_pod(broken)
    assert [d.field for d in problems] == [STATUS_FIELD]
    assert "cannot be policed" in problems[0].message
    assert parsed.attachments is None and not parsed.is_peer


# ---- NetworkAttachmentDefinitions -------------------------------------------------------------------

NADS = {
    "config not JSON": ("{not json", "spec.config is not JSON"),
    "config as a number": (5, "spec.config is a int, not a string of JSON"),
    "config missing": (None, "spec.config is empty"),
    "config a JSON number": ("5", "spec.config is not a JSON object"),
    "config without a type": ('{"cniVersion": "0.4.0", "master": "eth0"}', "spec.config has no type"),
    "config with an unsupported type": ('{"cniVersion": "0.4.0", "type": "bridge"}', "CNI type 'bridge', not in --network-plugins"),
    "config nested thousands deep": ('{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
}


@pytest.mark.parametrize("case", NADS)
def test_a_policy_naming_a_broken_network_is_reported_naming_the_network_and_never_opens_a_pod(case: str) -> None:
    """An unreadable NAD may have pods attached from before it broke: they stay policed (fail closed).
    A NAD of a type outside --network-plugins is the operator's choice: nothing is policed on it."""
    config, message = NADS[case]
    broken = nad("net-a")
    broken["spec"]["config"] = config
    parse_network(broken)  # never raises
    result = compile_objs([broken, *cluster()[1:], policy("bad", good_spec())])
    assert [(str(d.obj), d.field) for d in result.diagnostics] == [("default/bad", FOR_FIELD)]
    assert "network default/net-a" in result.diagnostics[0].message
    assert message in result.diagnostics[0].message
    if "unsupported type" in case:
        assert result.rulesets == {}
    else:
        assert "fail closed" in result.diagnostics[0].message
        assert set(result.rulesets) == {ObjRef("default", "server", "Pod")}
        server = result.rulesets[ObjRef("default", "server", "Pod")]
        assert server.ingress is not None and server.ingress.isolated == ("net1",)
        assert server.egress is not None and server.egress.isolated == ("net1",)


# ---- absurd sizes -----------------------------------------------------------------------------------


def test_ten_thousand_ip_blocks_compile_in_seconds_into_a_ruleset_the_agent_accepts() -> None:
    blocks = [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}} for i in range(10_000)]
    spec = good_spec()
    spec["ingress"][0]["from"] = blocks
    started = time.monotonic()
    result = compile_objs([*cluster(), policy("big", spec)])
    elapsed = time.monotonic() - started
    assert result.diagnostics == ()
    server = ruleset(result)
    assert server is not None
    spec_from_raw(spec_to_raw(server))
    assert allows(server, Direction.INGRESS, "10.39.15.1") and not allows(server, Direction.INGRESS, CLIENT)
    assert elapsed < 10, f"10,000 ipBlocks took {elapsed:.1f}s"


def test_a_hundred_thousand_character_label_value_selects_no_pod_and_crashes_nothing() -> None:
    huge = "v" * 100_000
    target = policy("huge", {**good_spec(), "podSelector": {"matchLabels": {"app": huge}}})
    peer = good_spec()
    peer["ingress"][0]["from"] = [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [huge]}]}}]
    result = compile_objs([*cluster(), target, policy("peer", peer)])
    assert result.selected["default/huge"] == ()
    assert not allows(ruleset(result), Direction.INGRESS, CLIENT), "a peer selector no pod can match grants nothing"


def test_a_policy_of_a_hundred_thousand_rules_and_ports_is_parsed_with_each_bad_entry_named() -> None:
    spec = good_spec()
    spec["ingress"] = [{"ports": [{"port": p % 70_000}]} for p in range(100_000)]
    pol, problems = parse_policy(policy("many", spec))
    bad = {d.field for d in problems}
    assert len(pol.ingress) == 100_000
    assert "spec.ingress[0].ports[0].port" in bad and "spec.ingress[65536].ports[0].port" in bad
    assert len(bad) == sum(1 for p in range(100_000) if not 1 <= p % 70_000 <= 65535)


def test_pod_problems_are_the_pods_own_never_a_policy_of_the_same_name() -> None:
    """A pod and a policy share the name `server`: the pod's unreadable network-status is reported
    on the pod only, and the valid policy has no problem."""
    objs = cluster()
    objs[2]["metadata"]["annotations"][NETWORK_STATUS] = "{oops"
    result = compile_objs([*objs, policy("server", good_spec())])
    kinds = {(str(d.obj), d.obj.kind) for d in result.diagnostics}
    assert kinds == {("default/server", "Pod")}, "the controller tells them apart by kind"


def test_a_policy_with_thousands_of_problems_gets_a_status_message_the_crd_accepts() -> None:
    """metav1.Condition (and crds/) cap a condition message at 32768 bytes: the status must fit, or
    it is never written and the problem goes unreported."""
    spec = good_spec()
    spec["ingress"] = [{"ports": [{"port": 0}]} for _ in range(30_000)]
    bad = policy("many", spec, networks="net-a," + ",".join(f"Missing_{i}" for i in range(2_000)))
    bad["metadata"]["annotations"][POLICY_FOR] += ",x" + "y" * 100_000
    result = compile_objs([*cluster(), bad])
    status = policy_status(bad, result.selected["default/many"], result.diagnostics, {}, "2026-01-01T00:00:00Z")
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "False"
    assert len(accepted["message"].encode()) <= 32768
    assert accepted["message"].count("; ") == 20 and FOR_FIELD in accepted["message"]
    assert accepted["message"].endswith(f"and {len(result.diagnostics) - 20} more problems")


def test_thirty_thousand_rules_that_allow_nothing_compile_to_a_ruleset_under_the_size_limit() -> None:
    """They are not peers, so an estimate counting peers alone let a 2.4 MB ruleset through, which
    the API server refuses (413): the pod kept its old ruleset, or stayed open if it had none."""
    spec = good_spec()
    spec["ingress"] = [{"ports": [{"port": 0}]} for _ in range(30_000)] + spec["ingress"]
    result = compile_objs([*cluster(), policy("many", spec)])
    server = ruleset(result)
    assert server is not None and server.compacted
    assert ruleset_size(server) <= CompileOptions().max_ruleset_bytes
    assert allows(server, Direction.INGRESS, CLIENT) and not allows(server, Direction.INGRESS, "192.0.2.99")
    assert any("compacted" in d.message for d in result.diagnostics if d.obj.kind == "Pod")


def test_a_ruleset_that_cannot_fit_even_compacted_isolates_the_pod_and_allows_nothing() -> None:
    spec = good_spec()
    spec["ingress"][0]["ports"] = [{"port": p} for p in range(1, 3_001, 2)]  # no two merge into a range
    limit = 20_000
    result = compile_rulesets(snapshot([*cluster(), policy("wide", spec)]), CompileOptions(max_ruleset_bytes=limit))
    server = ruleset(result)
    assert server is not None and ruleset_size(server) <= limit
    assert server.ingress is not None and server.ingress.isolated == ("net1",) and server.ingress.rules == ()
    assert not allows(server, Direction.INGRESS, CLIENT, 1)
    assert [d.message for d in result.diagnostics if "allow nothing" in d.message], result.diagnostics
    spec_from_raw(spec_to_raw(server))
