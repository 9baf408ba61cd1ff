"""compile_rulesets(): policies, pods, namespaces and networks → one PodNetworkRuleset spec per pod.

Pure and deterministic: no I/O, no clock, every collection sorted, so equal inputs give equal output
whatever their order. Isolation and allow rules are per network: a policy only ever touches the
pod's interfaces on the networks it names (and that exist and are of an allowed CNI type).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from mnp.api.cluster import Namespace, Network, Pod
from mnp.api.multus import Attachment
from mnp.api.policy import Policy, PolicyRule
from mnp.api.refs import Diagnostic, ObjRef, Severity
from mnp.api.ruleset import Direction, DirectionRules, Interface, Peer, PortSpec, Rule, RulesetSpec
from mnp.compiler.compact import compact_if_needed
from mnp.compiler.peers import Inventory, PeerAddress, peer_sort_key, pod_addresses, resolve_peers
from mnp.compiler.ports import (
    canonical_ports,
    has_named,
    named_ports_on,
    numeric_ports,
    port_key,
    resolve_ports_on,
)

DEFAULT_NETWORK_PLUGINS = frozenset({"macvlan"})
KNOWN_NETWORK_PLUGINS = frozenset({"macvlan", "ipvlan", "sriov"})


@dataclass(frozen=True, slots=True)
class CompileOptions:
    network_plugins: frozenset[str] = DEFAULT_NETWORK_PLUGINS
    # A real cluster refuses objects over 1.5 MiB; stay well under it (DESIGN §2 "Size").
    max_ruleset_bytes: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    policies: tuple[Policy, ...] = ()
    pods: tuple[Pod, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    networks: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class CompileResult:
    rulesets: Mapping[ObjRef, RulesetSpec]
    diagnostics: tuple[Diagnostic, ...]
    # policy "ns/name" → the pods it selects on at least one interface (for policy status).
    selected: Mapping[str, tuple[ObjRef, ...]]


@dataclass
class _PodAcc:
    pod: Pod
    policies: set[str] = field(default_factory=set)
    interfaces: dict[str, Attachment] = field(default_factory=dict)
    isolated: dict[Direction, set[str]] = field(default_factory=lambda: {d: set() for d in Direction})
    rules: dict[Direction, list[Rule]] = field(default_factory=lambda: {d: [] for d in Direction})


def compile_rulesets(
    snapshot: Snapshot, options: CompileOptions = CompileOptions(), only: AbstractSet[ObjRef] | None = None
) -> CompileResult:
    """The ruleset of every policed pod, the problems found, and what each policy selects.

    With `only`, rulesets are built for those pods alone (what each policy selects is still complete):
    the incremental recompute asks for the pods a change can alter.
    """
    # Parsing problems travel with their objects; the result reports them with the compiler's own.
    diagnostics: list[Diagnostic] = [d for p in snapshot.policies for d in p.problems]
    diagnostics += [d for pod in snapshot.pods for d in pod.problems]
    pods_by_ns: dict[str, list[Pod]] = defaultdict(list)
    for pod in sorted(snapshot.pods, key=lambda p: p.ref):
        pods_by_ns[pod.ref.namespace].append(pod)
    inv = Inventory({n.name: n.labels for n in snapshot.namespaces}, pods_by_ns)
    networks = {n.ref: n for n in snapshot.networks}
    accs: dict[ObjRef, _PodAcc] = {}
    selected: dict[str, tuple[ObjRef, ...]] = {}
    for policy in sorted(snapshot.policies, key=lambda p: p.ref):
        usable = _usable_networks(policy, networks, options, diagnostics)
        targets = _targets(policy, usable, pods_by_ns)
        selected[policy.key] = tuple(pod.ref for pod, _ in targets)
        if only is not None:
            targets = [(pod, ifaces) for pod, ifaces in targets if pod.ref in only]
        if targets:
            _apply_policy(policy, usable, targets, inv, accs)
    rulesets = {}
    for ref in sorted(accs):
        spec = _assemble(accs[ref])
        spec, problem = compact_if_needed(spec, options.max_ruleset_bytes)
        if problem:
            diagnostics.append(Diagnostic(ref, "", problem, Severity.WARNING))
        rulesets[ref] = spec
    return CompileResult(rulesets, tuple(sorted(set(diagnostics))), selected)


def _usable_networks(
    policy: Policy, networks: Mapping[ObjRef, Network], options: CompileOptions, out: list[Diagnostic]
) -> frozenset[ObjRef]:
    field = "metadata.annotations[k8s.v1.cni.cncf.io/policy-for]"
    usable = set()
    for ref in policy.networks:
        nad = networks.get(ref)
        if nad is None:
            out.append(
                Diagnostic(policy.ref, field, f"network {ref} does not exist: nothing is policed on it")
            )
        elif nad.cni_type is None:
            out.append(
                Diagnostic(policy.ref, field, f"network {ref}: {nad.problem}: nothing is policed on it")
            )
        elif nad.cni_type not in options.network_plugins:
            allowed = ",".join(sorted(options.network_plugins))
            out.append(
                Diagnostic(
                    policy.ref,
                    field,
                    f"network {ref} is of CNI type {nad.cni_type!r}, not in --network-plugins ({allowed}): "
                    "nothing is policed on it",
                )
            )
        else:
            usable.add(ref)
    return frozenset(usable)


def _targets(
    policy: Policy, networks: frozenset[ObjRef], pods_by_ns: Mapping[str, list[Pod]]
) -> list[tuple[Pod, tuple[Attachment, ...]]]:
    if not networks:
        return []
    out = []
    for pod in pods_by_ns.get(policy.ref.namespace, ()):
        if pod.is_policeable and policy.pod_selector.matches(pod.labels):
            ifaces = tuple(a for a in pod.attachments or () if a.network in networks)
            if ifaces:
                out.append((pod, ifaces))
    return out


def _apply_policy(
    policy: Policy,
    networks: frozenset[ObjRef],
    targets: list[tuple[Pod, tuple[Attachment, ...]]],
    inv: Inventory,
    accs: dict[ObjRef, _PodAcc],
) -> None:
    directions = [
        (Direction.INGRESS, policy.isolates_ingress, policy.ingress),
        (Direction.EGRESS, policy.isolates_egress, policy.egress),
    ]
    # Peers do not depend on the target pod: resolve them once per rule.
    resolved = {
        d: [resolve_peers(r.peers, policy, networks, inv) for r in rules]
        for d, isolates, rules in directions
        if isolates
    }
    # What does not depend on the target pod is worked out once per rule: the sorted peers, and for
    # egress with named ports (resolved on each peer) the whole split into groups.
    shared: dict[tuple[Direction, int], Any] = {}
    for d, isolates, rules in directions:
        for index, rule in enumerate(rules if isolates else ()):
            if d is Direction.EGRESS and has_named(rule.ports):
                shared[(d, index)] = _rule_groups(d, rule, resolved[d][index], None, networks, inv)
            else:
                shared[(d, index)] = _peers(resolved[d][index])
    for pod, ifaces in targets:
        acc = accs.setdefault(pod.ref, _PodAcc(pod))
        acc.policies.add(policy.key)
        for att in ifaces:
            acc.interfaces[att.interface] = att
        for d, isolates, rules in directions:
            if not isolates:
                continue
            acc.isolated[d].update(a.interface for a in ifaces)
            for index, rule in enumerate(rules):
                once = shared[(d, index)]
                if d is Direction.EGRESS and has_named(rule.ports):
                    groups = once
                else:  # ingress named ports resolve on the policed pod itself
                    groups = [(once, resolve_ports_on(rule.ports, pod))]
                for peers, ports in groups:
                    for att in ifaces:
                        acc.rules[d].append(Rule(policy.key, index, att.interface, peers, ports))


def _rule_groups(
    d: Direction,
    rule: PolicyRule,
    peers: tuple[PeerAddress, ...] | None,
    pod: Pod | None,
    networks: frozenset[ObjRef],
    inv: Inventory,
) -> list[tuple[tuple[Peer, ...] | None, tuple[PortSpec, ...] | None]]:
    """(peers, ports) pairs for one policy rule on one target pod (None: egress, which needs none).

    Named ports resolve on the destination: the policed pod for ingress, each peer for egress, where
    a rule splits into one rule per distinct resolution.
    """
    if d is Direction.INGRESS or not has_named(rule.ports):
        assert pod is not None
        return [(_peers(peers), resolve_ports_on(rule.ports, pod))]
    assert rule.ports is not None
    numeric = numeric_ports(rule.ports)
    groups: dict[tuple[PortSpec, ...], list[PeerAddress]] = defaultdict(list)
    out: list[tuple[tuple[Peer, ...] | None, tuple[PortSpec, ...] | None]] = []
    if peers is None:
        # Any destination: numeric ports hold everywhere; a named port only on pods that define it.
        out.append((None, numeric))
        candidates: Iterable[PeerAddress] = (
            a
            for n in inv.namespaces()
            for p in inv.pods_by_namespace.get(n, ())
            if p.is_peer
            for a in pod_addresses(p, networks)
        )
        for addr in candidates:
            named = named_ports_on(rule.ports, addr.pod)
            if named:
                groups[named].append(addr)
    else:
        for addr in peers:
            groups[canonical_ports(numeric + named_ports_on(rule.ports, addr.pod))].append(addr)
    for ports in sorted(groups, key=lambda ps: [port_key(p) for p in ps]):
        out.append((_peers(tuple(groups[ports])), ports))
    return out


def _peers(peers: tuple[PeerAddress, ...] | None) -> tuple[Peer, ...] | None:
    if peers is None:
        return None
    return tuple(a.peer for a in sorted(peers, key=peer_sort_key))


def _rule_key(r: Rule) -> tuple[object, ...]:
    return (
        r.policy,
        r.rule,
        r.interface,
        r.ports is None,
        [port_key(p) for p in r.ports or ()],
        r.peers is None,
        [p.sort_key() for p in r.peers or ()],
    )


def _assemble(acc: _PodAcc) -> RulesetSpec:
    directions: dict[Direction, DirectionRules | None] = {}
    for d in Direction:
        if not acc.isolated[d]:
            directions[d] = None
            continue
        directions[d] = DirectionRules(
            tuple(sorted(acc.isolated[d])), tuple(sorted(acc.rules[d], key=_rule_key))
        )
    return RulesetSpec(
        pod_uid=acc.pod.uid,
        node=acc.pod.node,
        policies=tuple(sorted(acc.policies)),
        compacted=False,
        interfaces=tuple(
            Interface(a.interface, str(a.network), tuple(sorted(a.ips, key=lambda ip: (ip.version, int(ip)))))
            for a in sorted(acc.interfaces.values(), key=lambda a: a.interface)
        ),
        ingress=directions[Direction.INGRESS],
        egress=directions[Direction.EGRESS],
    )
