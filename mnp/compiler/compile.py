"""compile_rulesets(): policies, pods, namespaces and networks → one PodNetworkRuleset spec per pod.

Pure and deterministic: no I/O, no clock, every collection sorted, so equal inputs give equal output
whatever their order. Isolation and allow rules are per network: a policy only ever touches the
pod's interfaces on the networks it names (and that exist and are of an allowed CNI type).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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
_DIRECTIONS = tuple(Direction)  # iterating an Enum class is slow; compiles do it per pod
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
    # `pods` by namespace as `index_pods` makes it, when the caller keeps one up to date (the
    # controller does, so that a pass after one change does not walk every pod); None: made here.
    pod_index: Mapping[str, Sequence[Pod]] | None = field(default=None, compare=False)

    def pods_by_namespace(self) -> Mapping[str, Sequence[Pod]]:
        return self.pod_index if self.pod_index is not None else index_pods(self.pods)


# The part of a policy's rules that does not depend on the target pod, per (direction, rule index):
# the sorted peers, or for egress with named ports (resolved on each peer) the (peers, ports) groups.
PolicyPeers = Mapping[tuple[Direction, int], Any]


@dataclass(frozen=True, slots=True)
class CompileResult:
    rulesets: Mapping[ObjRef, RulesetSpec]
    diagnostics: tuple[Diagnostic, ...]
    # policy "ns/name" → the pods it selects on at least one interface (for policy status).
    selected: Mapping[str, tuple[ObjRef, ...]]
    # policy "ns/name" → its resolved peers, for the policies that selected a pod (incremental reuse).
    peers: Mapping[str, PolicyPeers] = field(default_factory=dict)


@dataclass
class _PodAcc:
    pod: Pod
    policies: set[str] = field(default_factory=set)
    interfaces: dict[str, Attachment] = field(default_factory=dict)
    isolated: dict[Direction, set[str]] = field(default_factory=lambda: {d: set() for d in _DIRECTIONS})
    rules: dict[Direction, list[Rule]] = field(default_factory=lambda: {d: [] for d in _DIRECTIONS})


def compile_rulesets(
    snapshot: Snapshot,
    options: CompileOptions = CompileOptions(),
    only: AbstractSet[ObjRef] | None = None,
    known_peers: Mapping[str, PolicyPeers] | None = None,
    known_selected: Mapping[str, tuple[ObjRef, ...]] | None = None,
) -> CompileResult:
    """The ruleset of every policed pod, the problems found, and what each policy selects.

    With `only`, rulesets are built for those pods alone (what each policy selects is still complete):
    the incremental recompute asks for the pods a change can alter. It may also pass what it already
    knows to be current (affected.py tells it): `known_peers`, policies' resolved peers, used as they
    are; and `known_selected`, what policies select, so that only the pods of `only` are looked at.
    Pods' own parsing problems are reported for the pods of `only` alone when it is given.
    """
    pods_by_ns = snapshot.pods_by_namespace()
    restricted: dict[ObjRef, Pod] | None = None
    if only is not None:
        restricted = {
            pod.ref: pod
            for ns in sorted({r.namespace for r in only})
            for pod in pods_by_ns.get(ns, ())
            if pod.ref in only
        }
    # Parsing problems travel with their objects; the result reports them with the compiler's own.
    diagnostics: list[Diagnostic] = [d for p in snapshot.policies for d in p.problems]
    pods = snapshot.pods if restricted is None else restricted.values()
    diagnostics += [d for pod in pods if pod.problems for d in pod.problems]
    inv = Inventory({n.name: n.labels for n in snapshot.namespaces}, pods_by_ns)
    networks = {n.ref: n for n in snapshot.networks}
    accs: dict[ObjRef, _PodAcc] = {}
    selected: dict[str, tuple[ObjRef, ...]] = {}
    resolved: dict[str, PolicyPeers] = {}
    for policy in sorted(snapshot.policies, key=lambda p: p.ref):
        usable = _usable_networks(policy, networks, options, diagnostics)
        known = known_selected.get(policy.key) if known_selected is not None else None
        if known is not None and restricted is not None:
            selected[policy.key] = known
            targets = _attached([restricted[r] for r in known if r in restricted], usable)
        else:
            targets = _targets(policy, usable, pods_by_ns)
            selected[policy.key] = tuple(pod.ref for pod, _ in targets)
            if only is not None:
                targets = [(pod, ifaces) for pod, ifaces in targets if pod.ref in only]
        if targets:
            peers = (known_peers or {}).get(policy.key)
            if peers is None:
                peers = _policy_peers(policy, usable, inv)
            resolved[policy.key] = peers
            _apply_policy(policy, targets, peers, accs)
    rulesets = {}
    for ref in sorted(accs):
        spec = _assemble(accs[ref])
        spec, problem = compact_if_needed(spec, options.max_ruleset_bytes)
        if problem:
            diagnostics.append(Diagnostic(ref, "", problem, Severity.WARNING))
        rulesets[ref] = spec
    return CompileResult(rulesets, tuple(sorted(set(diagnostics))), selected, resolved)


def selected_pods(
    snapshot: Snapshot, options: CompileOptions, policies: Iterable[Policy]
) -> dict[str, tuple[ObjRef, ...]]:
    """What `compile_rulesets(...).selected` says of `policies`, without building any ruleset."""
    pods_by_ns = snapshot.pods_by_namespace()
    networks = {n.ref: n for n in snapshot.networks}
    out = {}
    for policy in policies:
        usable = _usable_networks(policy, networks, options, [])
        out[policy.key] = tuple(pod.ref for pod, _ in _targets(policy, usable, pods_by_ns))
    return out


def index_pods(pods: Iterable[Pod]) -> dict[str, list[Pod]]:
    """Pods by namespace, each list in name order (already in order when `pods` is sorted by ref)."""
    by_ns: dict[str, list[Pod]] = defaultdict(list)
    unordered: set[str] = set()
    for pod in pods:
        members = by_ns[pod.ref.namespace]
        if members and members[-1].ref.name > pod.ref.name:
            unordered.add(pod.ref.namespace)
        members.append(pod)
    for ns in unordered:
        by_ns[ns].sort(key=lambda p: p.ref.name)
    return by_ns


def _usable_networks(
    policy: Policy, networks: Mapping[ObjRef, Network], options: CompileOptions, out: list[Diagnostic]
) -> frozenset[ObjRef]:
    field = "metadata.annotations[k8s.v1.cni.cncf.io/policy-for]"
    usable = set()
    for ref in policy.networks:
        nad = networks.get(ref)
        # A NAD that is gone or unreadable may still have pods attached (Multus attached them while it
        # was fine): they stay policed (fail closed) and the policy says why it is not Accepted.
        if nad is None:
            out.append(
                Diagnostic(
                    policy.ref,
                    field,
                    f"network {ref} does not exist: pods still attached to it stay policed (fail closed)",
                )
            )
            usable.add(ref)
        elif nad.cni_type is None:
            out.append(
                Diagnostic(
                    policy.ref,
                    field,
                    f"network {ref}: {nad.problem}: pods attached to it stay policed (fail closed) until "
                    "it is fixed",
                )
            )
            usable.add(ref)
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
    policy: Policy, networks: frozenset[ObjRef], pods_by_ns: Mapping[str, Sequence[Pod]]
) -> list[tuple[Pod, tuple[Attachment, ...]]]:
    if not networks:
        return []
    candidates = pods_by_ns.get(policy.ref.namespace, ())
    return _attached(
        [pod for pod in candidates if pod.is_policeable and policy.pod_selector.matches(pod.labels)], networks
    )


def _attached(
    pods: Iterable[Pod], networks: frozenset[ObjRef]
) -> list[tuple[Pod, tuple[Attachment, ...]]]:
    """The pods with their interfaces on `networks`, leaving out those with none."""
    out = []
    for pod in pods:
        ifaces = tuple(a for a in pod.attachments or () if a.network in networks)
        if ifaces:
            out.append((pod, ifaces))
    return out


def _directions(policy: Policy) -> list[tuple[Direction, bool, tuple[PolicyRule, ...]]]:
    return [
        (Direction.INGRESS, policy.isolates_ingress, policy.ingress),
        (Direction.EGRESS, policy.isolates_egress, policy.egress),
    ]


def _policy_peers(policy: Policy, networks: frozenset[ObjRef], inv: Inventory) -> PolicyPeers:
    """What does not depend on the target pod, worked out once per rule: its (peers, ports) groups,
    or, for ingress with named ports (resolved on each target pod), the sorted peers alone."""
    shared: dict[tuple[Direction, int], Any] = {}
    for d, isolates, rules in _directions(policy):
        for index, rule in enumerate(rules if isolates else ()):
            found = resolve_peers(rule.peers, policy, networks, inv)
            if d is Direction.EGRESS and has_named(rule.ports):
                shared[(d, index)] = _rule_groups(d, rule, found, None, networks, inv)
            elif has_named(rule.ports):
                shared[(d, index)] = _PerPod(_peers(found))
            else:
                shared[(d, index)] = [(_peers(found), resolve_ports_on(rule.ports, None))]
    return shared


@dataclass(frozen=True, slots=True)
class _PerPod:
    """Peers of an ingress rule whose named ports resolve on each target pod."""

    peers: tuple[Peer, ...] | None


def _apply_policy(
    policy: Policy,
    targets: list[tuple[Pod, tuple[Attachment, ...]]],
    shared: PolicyPeers,
    accs: dict[ObjRef, _PodAcc],
) -> None:
    directions = _directions(policy)
    for pod, ifaces in targets:
        acc = accs.setdefault(pod.ref, _PodAcc(pod))
        acc.policies.add(policy.key)
        for att in ifaces:
            acc.interfaces[att.interface] = att
        for d, isolates, rules in directions:
            if not isolates:
                continue
            acc.isolated[d].update(a.interface for a in ifaces)
            for index in range(len(rules)):
                groups = shared[(d, index)]
                if isinstance(groups, _PerPod):  # ingress named ports resolve on the policed pod itself
                    groups = [(groups.peers, resolve_ports_on(rules[index].ports, pod))]
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


class _PeersKey:
    """Orders peer lists like the list of their sort keys, built only when two rules tie before it."""

    __slots__ = ("peers",)

    def __init__(self, peers: tuple[Peer, ...] | None) -> None:
        self.peers = peers or ()

    def __lt__(self, other: _PeersKey) -> bool:
        return [p.sort_key() for p in self.peers] < [p.sort_key() for p in other.peers]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PeersKey) and self.peers == other.peers

    __hash__ = None  # type: ignore[assignment]


def _rule_key(r: Rule) -> tuple[object, ...]:
    return (
        r.policy,
        r.rule,
        r.interface,
        r.ports is None,
        [port_key(p) for p in r.ports or ()],
        r.peers is None,
        _PeersKey(r.peers),
    )


def _assemble(acc: _PodAcc) -> RulesetSpec:
    directions: dict[Direction, DirectionRules | None] = {}
    for d in _DIRECTIONS:
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
