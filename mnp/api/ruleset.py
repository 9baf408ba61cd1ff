"""PodNetworkRuleset (mnp.dev/v1alpha1): the compiled, fully resolved policy of one pod.

It is the contract between the controller (writes it) and the agent (renders and applies it). The
agent treats it as untrusted, so `spec_from_raw` validates every field and the value types make bad
values unrepresentable: addresses are `ipaddress` objects, ports are bounded ints, protocols an enum,
interface names match the kernel's rules. `spec_to_raw` is the canonical wire form (camelCase).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mnp.api.errors import InvalidRuleset

GROUP = "mnp.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PodNetworkRuleset"
PLURAL = "podnetworkrulesets"
NODE_LABEL = "mnp.dev/node"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Linux IFNAMSIZ is 16 with the NUL; the kernel also forbids '/', ':' and whitespace. We accept a
# stricter alphabet so that an interface name can never carry nft syntax (quotes, braces, ';').
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# DNS-1123 labels/subdomains: namespaces, names of pods, policies, NADs, nodes.
_DNS = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_NSNAME = re.compile(rf"^{_DNS}/{_DNS}$")
_NODE = re.compile(rf"^{_DNS}$")
_UID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CIDR = re.compile(r"[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}")
_ADDRESS = re.compile(r"[0-9A-Fa-f:.]{2,45}")


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


def is_valid_ifname(name: str) -> bool:
    return bool(_IFNAME.fullmatch(name)) and name not in (".", "..")


@dataclass(frozen=True, slots=True, order=True)
class PortSpec:
    """One port entry: protocol with a port, a range [port, end_port], or every port (port None)."""

    protocol: Protocol
    port: int | None = None
    end_port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not (isinstance(self.port, int) and 1 <= self.port <= 65535):
            raise ValueError(f"port {self.port!r} is not in 1-65535")
        if self.end_port is not None:
            if self.port is None:
                raise ValueError("endPort needs port")
            if not (isinstance(self.end_port, int) and self.port <= self.end_port <= 65535):
                raise ValueError(f"endPort {self.end_port!r} is not in {self.port}-65535")


PeerKey = tuple[int, int, int, tuple[tuple[int, int], ...], str]


@dataclass(frozen=True, slots=True)
class Peer:
    """Addresses a rule allows: `cidr` minus `excepts`. `pod` is provenance only (ns/name)."""

    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()
    pod: str | None = None
    # The sort key, worked out once: compiles sort and hash the same (shared) peers many times.
    _key: PeerKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for ex in self.excepts:
            if ex.version != self.cidr.version or not ex.subnet_of(self.cidr):  # type: ignore[arg-type]
                raise ValueError(f"except {ex} is not inside {self.cidr}")
        key = (
            self.cidr.version,
            int(self.cidr.network_address),
            self.cidr.prefixlen,
            tuple((int(e.network_address), e.prefixlen) for e in self.excepts),
            self.pod or "",
        )
        object.__setattr__(self, "_key", key)

    def __hash__(self) -> int:  # equal peers have equal keys
        return hash(self._key)

    def sort_key(self) -> PeerKey:
        return self._key

    def address_key(self) -> tuple[object, ...]:
        """Equal for two peers exactly when they allow the same addresses (`pod` aside)."""
        return self._key[:4]


@dataclass(frozen=True, slots=True)
class Rule:
    """An allow rule on one interface. None = any peer / any port; () = nothing."""

    policy: str
    rule: int
    interface: str
    peers: tuple[Peer, ...] | None = None
    ports: tuple[PortSpec, ...] | None = None


@dataclass(frozen=True, slots=True)
class DirectionRules:
    isolated: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    network: str
    ips: tuple[IPAddress, ...] = ()


@dataclass(frozen=True, slots=True)
class RulesetSpec:
    pod_uid: str
    node: str
    policies: tuple[str, ...] = ()
    compacted: bool = False
    interfaces: tuple[Interface, ...] = ()
    ingress: DirectionRules | None = None
    egress: DirectionRules | None = None

    def direction(self, d: Direction) -> DirectionRules | None:
        return self.ingress if d is Direction.INGRESS else self.egress


# --- wire form -------------------------------------------------------------------------------------


# Raw peer lists already made, by the identity of their tuple (kept alive with it): a compile shares
# one peers tuple between every pod a rule applies to, so the list is made once and shared too.
PeersMemo = dict[int, tuple[tuple[Peer, ...], list[dict[str, Any]]]]


def spec_to_raw(spec: RulesetSpec, memo: PeersMemo | None = None) -> dict[str, Any]:
    """The canonical camelCase form: key order fixed, optional parts omitted, lists as stored.

    With `memo`, equal peer tuples come out as one shared list: treat the result as read-only."""
    raw: dict[str, Any] = {
        "podUID": spec.pod_uid,
        "node": spec.node,
        "policies": list(spec.policies),
        "compacted": spec.compacted,
        "interfaces": [
            {"name": i.name, "network": i.network, "ips": [str(a) for a in i.ips]} for i in spec.interfaces
        ],
    }
    for d in Direction:
        rules = spec.direction(d)
        if rules is not None:
            raw[d.value] = {
                "isolated": list(rules.isolated),
                "rules": [_rule_to_raw(r, memo) for r in rules.rules],
            }
    return raw


def _rule_to_raw(rule: Rule, memo: PeersMemo | None) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": rule.policy, "rule": rule.rule, "interface": rule.interface}
    if rule.peers is not None:
        hit = memo.get(id(rule.peers)) if memo is not None else None
        if hit is not None and hit[0] is rule.peers:
            out["peers"] = hit[1]
        else:
            out["peers"] = [_peer_to_raw(p) for p in rule.peers]
            if memo is not None:
                memo[id(rule.peers)] = (rule.peers, out["peers"])
    if rule.ports is not None:
        out["ports"] = [_port_to_raw(p) for p in rule.ports]
    return out


def _peer_to_raw(peer: Peer) -> dict[str, Any]:
    cidr, excepts = _peer_texts(peer)
    out: dict[str, Any] = {"cidr": cidr}
    if excepts:
        out["except"] = list(excepts)
    if peer.pod is not None:
        out["pod"] = peer.pod
    return out


@functools.lru_cache(maxsize=1 << 17)
def _peer_texts(peer: Peer) -> tuple[str, tuple[str, ...]]:
    """A peer's networks as text: peers are shared between rulesets and compiles, and formatting an
    address is the costliest part of writing a ruleset out."""
    return str(peer.cidr), tuple(str(e) for e in peer.excepts)


def _port_to_raw(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": port.protocol.value}
    if port.port is not None:
        out["port"] = port.port
    if port.end_port is not None:
        out["endPort"] = port.end_port
    return out


def spec_from_raw(raw: Any, path: str = "spec") -> RulesetSpec:
    """Validate an untrusted spec; raises InvalidRuleset naming the first bad field."""
    m = _mapping(raw, path)
    interfaces = tuple(
        _interface(x, f"{path}.interfaces[{i}]") for i, x in enumerate(_list(m, "interfaces", path))
    )
    names = [i.name for i in interfaces]
    if len(set(names)) != len(names):
        raise InvalidRuleset(f"{path}.interfaces", "interface names are not unique")
    policies = tuple(_nsname(p, f"{path}.policies[{i}]") for i, p in enumerate(_list(m, "policies", path)))
    if len(set(policies)) != len(policies):
        raise InvalidRuleset(f"{path}.policies", "policy references are not unique")
    compacted = m.get("compacted", False)
    if not isinstance(compacted, bool):
        raise InvalidRuleset(f"{path}.compacted", f"{compacted!r} is not a boolean")
    directions: dict[str, DirectionRules | None] = {}
    for d in Direction:
        sub = m.get(d.value)
        directions[d.value] = None if sub is None else _direction(sub, f"{path}.{d.value}", set(names))
    return RulesetSpec(
        pod_uid=_match(m.get("podUID"), _UID, f"{path}.podUID", "a pod UID"),
        node=_match(m.get("node"), _NODE, f"{path}.node", "a node name"),
        policies=policies,
        compacted=compacted,
        interfaces=interfaces,
        ingress=directions["ingress"],
        egress=directions["egress"],
    )


def _direction(raw: Any, path: str, interfaces: set[str]) -> DirectionRules:
    m = _mapping(raw, path)
    isolated = []
    for i, name in enumerate(_list(m, "isolated", path)):
        p = f"{path}.isolated[{i}]"
        if _ifname(name, p) not in interfaces:
            raise InvalidRuleset(p, f"interface {name!r} is not in spec.interfaces")
        isolated.append(name)
    rules = []
    for i, r in enumerate(_list(m, "rules", path)):
        p = f"{path}.rules[{i}]"
        rule = _rule(r, p)
        if rule.interface not in interfaces:
            raise InvalidRuleset(f"{p}.interface", f"interface {rule.interface!r} is not in spec.interfaces")
        rules.append(rule)
    return DirectionRules(isolated=tuple(isolated), rules=tuple(rules))


def _rule(raw: Any, path: str) -> Rule:
    m = _mapping(raw, path)
    index = m.get("rule")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise InvalidRuleset(f"{path}.rule", f"{index!r} is not a rule index")
    for key in ("peers", "ports"):
        if key in m and m[key] is None:
            # An API server drops the null (meaning "any"); a file may carry it. Refuse to guess.
            raise InvalidRuleset(f"{path}.{key}", "null is ambiguous: omit the field for any, [] for nothing")
    peers = None
    if "peers" in m:
        peers = tuple(
            _known_peer(x) or _peer(x, f"{path}.peers[{i}]") for i, x in enumerate(_list(m, "peers", path))
        )
    ports = None
    if "ports" in m:
        ports = tuple(_port(x, f"{path}.ports[{i}]") for i, x in enumerate(_list(m, "ports", path)))
    return Rule(
        policy=_nsname(m.get("policy"), f"{path}.policy"),
        rule=index,
        interface=_ifname(m.get("interface"), f"{path}.interface"),
        peers=peers,
        ports=ports,
    )


def _known_peer(raw: Any) -> Peer | None:
    """The peer of a plain `{cidr, pod}` entry, validated once and shared: the same peers recur in
    every ruleset of a policy and in each update of it. None when `raw` is anything else or invalid
    (`_peer` then says what is wrong, with its path)."""
    if type(raw) is not dict or "except" in raw:
        return None
    cidr, pod = raw.get("cidr"), raw.get("pod")
    if type(cidr) is not str or (pod is not None and type(pod) is not str):
        return None
    return _plain_peer(cidr, pod)


@functools.lru_cache(maxsize=1 << 16)
def _plain_peer(cidr: str, pod: str | None) -> Peer | None:
    try:
        return _peer({"cidr": cidr, "pod": pod}, "")
    except InvalidRuleset:
        return None


def _peer(raw: Any, path: str) -> Peer:
    m = _mapping(raw, path)
    cidr = _network(m.get("cidr"), f"{path}.cidr")
    excepts = tuple(_network(x, f"{path}.except[{i}]") for i, x in enumerate(_list(m, "except", path)))
    pod = m.get("pod")
    if pod is not None:
        pod = _nsname(pod, f"{path}.pod")
    try:
        return Peer(cidr=cidr, excepts=excepts, pod=pod)
    except ValueError as e:
        raise InvalidRuleset(f"{path}.except", str(e)) from None


def _port(raw: Any, path: str) -> PortSpec:
    m = _mapping(raw, path)
    proto = m.get("protocol")
    if not isinstance(proto, str) or proto not in Protocol.__members__:
        raise InvalidRuleset(f"{path}.protocol", f"{proto!r} is not one of TCP, UDP, SCTP")
    port, end = m.get("port"), m.get("endPort")
    for key, value in (("port", port), ("endPort", end)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidRuleset(f"{path}.{key}", f"{value!r} is not a port number")
    try:
        PortSpec(Protocol(proto), port)
    except ValueError as e:
        raise InvalidRuleset(f"{path}.port", str(e)) from None
    try:
        return PortSpec(Protocol(proto), port, end)
    except ValueError as e:
        raise InvalidRuleset(f"{path}.endPort", str(e)) from None


def _interface(raw: Any, path: str) -> Interface:
    m = _mapping(raw, path)
    ips = []
    for i, a in enumerate(_list(m, "ips", path)):
        try:
            if not isinstance(a, str) or not _ADDRESS.fullmatch(a):
                raise ValueError(a)  # no scope ids (fe80::1%net1): nft cannot express them
            ips.append(ipaddress.ip_address(a))
        except ValueError:
            raise InvalidRuleset(f"{path}.ips[{i}]", f"{a!r} is not an IP address") from None
    return Interface(
        name=_ifname(m.get("name"), f"{path}.name"),
        network=_nsname(m.get("network"), f"{path}.network"),
        ips=tuple(ips),
    )


def _network(raw: Any, path: str) -> IPNetwork:
    if not isinstance(raw, str) or not _CIDR.fullmatch(raw):
        raise InvalidRuleset(path, f"{raw!r} is not a CIDR (address/prefix length)")
    network = _parsed_network(raw)
    if network is None:
        raise InvalidRuleset(path, f"{raw!r} is not a CIDR with its host bits zero")
    return network


@functools.lru_cache(maxsize=1 << 16)
def _parsed_network(text: str) -> IPNetwork | None:
    """Parsing is most of the cost of validating a big ruleset, and the same peers recur across
    rulesets and their updates; networks are immutable, so they are shared."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def _ifname(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not is_valid_ifname(raw):
        raise InvalidRuleset(path, f"{raw!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
    return raw


def _nsname(raw: Any, path: str) -> str:
    return _match(raw, _NSNAME, path, "a namespace/name reference")


def _match(raw: Any, pattern: re.Pattern[str], path: str, what: str) -> str:
    if not isinstance(raw, str) or not pattern.fullmatch(raw):
        raise InvalidRuleset(path, f"{raw!r} is not {what}")
    return raw


def _mapping(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidRuleset(path, f"expected an object, got {type(raw).__name__}")
    return raw


def _list(m: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = m.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRuleset(f"{path}.{key}", f"expected a list, got {type(value).__name__}")
    return value


# --- whole objects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str


def ruleset_object(
    pod: PodRef, spec: RulesetSpec, labels: Mapping[str, str] | None = None, memo: PeersMemo | None = None
) -> dict[str, Any]:
    """The PodNetworkRuleset the controller writes for `pod`: same namespace/name, owned by the pod.
    `memo`: as for spec_to_raw."""
    meta: dict[str, Any] = {
        "name": pod.name,
        "namespace": pod.namespace,
        "labels": {NODE_LABEL: spec.node, **(labels or {})},
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.name,
                "uid": pod.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec_to_raw(spec, memo)}


def spec_from_object(raw: Any) -> RulesetSpec:
    """The validated spec of a whole PodNetworkRuleset (as `kubectl get -o yaml` prints it)."""
    m = _mapping(raw, "")
    if m.get("kind") not in (KIND, None) or m.get("apiVersion") not in (API_VERSION, None):
        raise InvalidRuleset("kind", f"{m.get('apiVersion')}/{m.get('kind')} is not {API_VERSION}/{KIND}")
    meta = m.get("metadata") or {}
    obj = f"{meta.get('namespace', '')}/{meta.get('name', '')}" if isinstance(meta, Mapping) else ""
    try:
        return spec_from_raw(m.get("spec"))
    except InvalidRuleset as e:
        raise InvalidRuleset(e.field, e.message, obj) from None


__all__ = [
    "API_VERSION",
    "Direction",
    "DirectionRules",
    "Interface",
    "KIND",
    "NODE_LABEL",
    "Peer",
    "PodRef",
    "PortSpec",
    "Protocol",
    "Rule",
    "RulesetSpec",
    "ruleset_object",
    "spec_from_object",
    "spec_from_raw",
    "spec_to_raw",
]
