"""MultiNetworkPolicy (k8s.cni.cncf.io/v1beta1) as frozen values, parsed from raw JSON.

Parsing never raises on user input: every problem becomes a Diagnostic naming the field, and the bad
part is replaced by something that grants nothing (fail closed): a bad peer matches no address, a bad
port entry matches no port, an unknown policyType isolates both directions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.api.refs import Diagnostic, ObjRef, Severity
from mnp.api.ruleset import IPNetwork, Protocol
from mnp.api.selectors import LabelSelector, parse_selector

POLICY_FOR = "k8s.v1.cni.cncf.io/policy-for"
KIND = "MultiNetworkPolicy"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# IANA_SVC_NAME as Kubernetes validates container port names: 1-15 chars, a letter somewhere.
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyPeer:
    """One entry of from/to. `valid` False: it could not be understood and matches nothing."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None
    valid: bool = True


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """`port` is a number, a container port name, or None (every port of the protocol)."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ingress/egress entry. None = any (field omitted or empty); () = nothing."""

    peers: tuple[PolicyPeer, ...] | None = None
    ports: tuple[PolicyPort, ...] | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    ref: ObjRef
    generation: int
    networks: tuple[ObjRef, ...]
    pod_selector: LabelSelector
    isolates_ingress: bool
    isolates_egress: bool
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    problems: tuple[Diagnostic, ...] = ()
    key: str = field(init=False, repr=False, compare=False)  # "ns/name", the policy's name everywhere
    # (is_egress, rule) for the directions the policy isolates: the rules that grant anything.
    isolated_rules: tuple[tuple[bool, PolicyRule], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", str(self.ref))
        rules = [(False, r) for r in self.ingress] if self.isolates_ingress else []
        rules += [(True, r) for r in self.egress] if self.isolates_egress else []
        object.__setattr__(self, "isolated_rules", tuple(rules))


class _Problems:
    """Collects diagnostics for one object."""

    def __init__(self, obj: ObjRef) -> None:
        self.obj = obj
        self.items: list[Diagnostic] = []

    def error(self, field: str, message: str) -> None:
        self.items.append(Diagnostic(self.obj, field, message, Severity.ERROR))

    def warning(self, field: str, message: str) -> None:
        self.items.append(Diagnostic(self.obj, field, message, Severity.WARNING))


def parse_policy_for(value: Any, namespace: str, problems: _Problems) -> tuple[ObjRef, ...]:
    """The networks named by the policy-for annotation: `name` or `ns/name`, comma separated."""
    field = f"metadata.annotations[{POLICY_FOR}]"
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.error(field, "missing or empty: the policy names no network and polices nothing")
        return ()
    if not isinstance(value, str):
        problems.error(field, f"{value!r} is not a string")
        return ()
    refs: list[ObjRef] = []
    for i, entry in enumerate(value.split(",")):
        entry = entry.strip()
        parts = entry.split("/")
        ok = (len(parts) == 1 and _DNS_SUBDOMAIN.fullmatch(parts[0])) or (
            len(parts) == 2 and _DNS_LABEL.fullmatch(parts[0]) and _DNS_SUBDOMAIN.fullmatch(parts[1])
        )
        if not ok:
            problems.error(f"{field}[{i}]", f"{entry!r} is not a network name or namespace/name")
            continue
        ref = ObjRef.parse(entry, namespace, "NetworkAttachmentDefinition")
        if ref not in refs:
            refs.append(ref)
    return tuple(sorted(refs))


def parse_policy(raw: Mapping[str, Any]) -> tuple[Policy, list[Diagnostic]]:
    """Parse a MultiNetworkPolicy; never raises on bad content (see module docstring)."""
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    ref = ObjRef(str(meta.get("namespace") or "default"), str(meta.get("name") or ""), KIND)
    problems = _Problems(ref)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    assert isinstance(annotations, Mapping)
    networks = parse_policy_for(annotations.get(POLICY_FOR), ref.namespace, problems)
    spec = raw.get("spec")
    if not isinstance(spec, Mapping):
        problems.error("spec", "missing or not an object: the policy isolates its pods and allows nothing")
        spec = {}
    selector_raw = spec.get("podSelector", {})
    pod_selector = parse_selector(selector_raw, "spec.podSelector", problems.error)
    if pod_selector is None:
        # An unreadable target selector selects no pod: we cannot know which pods were meant.
        pod_selector = LabelSelector.nothing()
    ingress = _parse_rules(spec, "ingress", "from", problems)
    egress = _parse_rules(spec, "egress", "to", problems)
    isolates_ingress, isolates_egress = _policy_types(spec, problems)
    generation = meta.get("generation", 0)
    policy = Policy(
        ref=ref,
        generation=generation if isinstance(generation, int) else 0,
        networks=networks,
        pod_selector=pod_selector,
        isolates_ingress=isolates_ingress,
        isolates_egress=isolates_egress,
        ingress=ingress,
        egress=egress,
        problems=tuple(problems.items),
    )
    return policy, problems.items


def _policy_types(spec: Mapping[str, Any], problems: _Problems) -> tuple[bool, bool]:
    types = spec.get("policyTypes")
    if types is None or types == []:
        # NetworkPolicy defaulting: Ingress always; Egress iff there are egress rules.
        egress = spec.get("egress")
        return True, isinstance(egress, list) and len(egress) > 0
    if not isinstance(types, list):
        problems.error("spec.policyTypes", f"{types!r} is not a list: isolating both directions")
        return True, True
    ingress = egress_ = False
    for i, t in enumerate(types):
        if t == "Ingress":
            ingress = True
        elif t == "Egress":
            egress_ = True
        else:
            problems.error(
                f"spec.policyTypes[{i}]", f"{t!r} is not Ingress or Egress: isolating both directions"
            )
            return True, True
    return ingress, egress_


def _parse_rules(
    spec: Mapping[str, Any], key: str, peer_key: str, problems: _Problems
) -> tuple[PolicyRule, ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.error(f"spec.{key}", f"expected a list, got {type(raw).__name__}: no {key} allowed")
        return ()
    rules = []
    for i, r in enumerate(raw):
        path = f"spec.{key}[{i}]"
        if not isinstance(r, Mapping):  # a null rule too: fail closed rather than read it as "allow all"
            problems.error(path, f"expected an object, got {type(r).__name__}: the rule allows nothing")
            rules.append(PolicyRule(peers=(), ports=()))
            continue
        rules.append(
            PolicyRule(peers=_parse_peers(r, path, peer_key, problems), ports=_parse_ports(r, path, problems))
        )
    return tuple(rules)


def _parse_peers(
    rule: Mapping[str, Any], path: str, key: str, problems: _Problems
) -> tuple[PolicyPeer, ...] | None:
    raw = rule.get(key)
    if raw is None or raw == []:
        return None  # "If this field is empty or missing, this rule matches all sources/destinations"
    if not isinstance(raw, list):
        problems.error(f"{path}.{key}", f"expected a list, got {type(raw).__name__}: the rule allows nothing")
        return ()
    return tuple(_parse_peer(p, f"{path}.{key}[{i}]", problems) for i, p in enumerate(raw))


_NOTHING = PolicyPeer(valid=False)


def _parse_peer(raw: Any, path: str, problems: _Problems) -> PolicyPeer:
    if not isinstance(raw, Mapping):
        problems.error(path, f"expected an object, got {type(raw).__name__}: the peer matches nothing")
        return _NOTHING
    unknown = sorted(set(raw) - {"podSelector", "namespaceSelector", "ipBlock"})
    if unknown:
        problems.warning(path, f"unknown field(s) {', '.join(unknown)} ignored")
    if "ipBlock" in raw and raw["ipBlock"] is not None:
        if raw.get("podSelector") is not None or raw.get("namespaceSelector") is not None:
            # NetworkPolicy forbids mixing; the reference implementations let ipBlock win.
            problems.warning(path, "ipBlock cannot be combined with selectors: the selectors are ignored")
        block = _parse_ip_block(raw["ipBlock"], f"{path}.ipBlock", problems)
        return PolicyPeer(ip_block=block) if block is not None else _NOTHING
    has_pod, has_ns = raw.get("podSelector") is not None, raw.get("namespaceSelector") is not None
    if not has_pod and not has_ns:
        problems.error(
            path, "a peer needs podSelector, namespaceSelector or ipBlock: the peer matches nothing"
        )
        return _NOTHING
    pod = parse_selector(raw["podSelector"], f"{path}.podSelector", problems.error) if has_pod else None
    ns = (
        parse_selector(raw["namespaceSelector"], f"{path}.namespaceSelector", problems.error)
        if has_ns
        else None
    )
    if (has_pod and pod is None) or (has_ns and ns is None):
        return _NOTHING
    return PolicyPeer(pod_selector=pod, namespace_selector=ns)


def _parse_ip_block(raw: Any, path: str, problems: _Problems) -> IPBlock | None:
    if not isinstance(raw, Mapping):
        problems.error(path, f"expected an object, got {type(raw).__name__}: the peer matches nothing")
        return None
    cidr = _parse_cidr(raw.get("cidr"), f"{path}.cidr", problems)
    if cidr is None:
        return None
    excepts_raw = raw.get("except") or []
    if not isinstance(excepts_raw, list):
        problems.error(f"{path}.except", "expected a list: the peer matches nothing")
        return None
    excepts: list[IPNetwork] = []
    for i, e in enumerate(excepts_raw):
        ex = _parse_cidr(e, f"{path}.except[{i}]", problems)
        if ex is None:
            return None  # we cannot tell what to remove, so the peer grants nothing
        if ex.version != cidr.version or not ex.overlaps(cidr):
            problems.warning(f"{path}.except[{i}]", f"{ex} is not inside {cidr}: it removes nothing")
            continue
        if cidr.subnet_of(ex):  # type: ignore[arg-type]
            problems.warning(f"{path}.except[{i}]", f"{ex} covers all of {cidr}: the peer matches nothing")
            return None
        excepts.append(ex)
    return IPBlock(cidr, tuple(sorted(set(excepts), key=lambda n: (int(n.network_address), n.prefixlen))))


def _parse_cidr(raw: Any, path: str, problems: _Problems) -> IPNetwork | None:
    if not isinstance(raw, str) or "/" not in raw:
        problems.error(path, f"{raw!r} is not a CIDR: the peer matches nothing")
        return None
    try:
        net = ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        problems.error(path, f"{raw!r} is not a CIDR: the peer matches nothing")
        return None
    if str(net) != raw.strip():
        problems.warning(path, f"{raw!r} has host bits set; using {net}")
    return net


def _parse_ports(rule: Mapping[str, Any], path: str, problems: _Problems) -> tuple[PolicyPort, ...] | None:
    raw = rule.get("ports")
    if raw is None or raw == []:
        return None  # "If this field is empty or missing, this rule matches all ports"
    if not isinstance(raw, list):
        problems.error(f"{path}.ports", f"expected a list, got {type(raw).__name__}: the rule allows nothing")
        return ()
    ports = []
    for i, p in enumerate(raw):
        port = _parse_port(p, f"{path}.ports[{i}]", problems)
        if port is not None:
            ports.append(port)
    return tuple(ports)


def _parse_port(raw: Any, path: str, problems: _Problems) -> PolicyPort | None:
    if not isinstance(raw, Mapping):
        problems.error(path, f"expected an object, got {type(raw).__name__}: the entry allows nothing")
        return None
    proto_raw = raw.get("protocol", "TCP")
    if proto_raw is None:
        proto_raw = "TCP"
    if proto_raw not in Protocol.__members__:
        problems.error(f"{path}.protocol", f"{proto_raw!r} is not TCP, UDP or SCTP: the entry allows nothing")
        return None
    proto = Protocol(proto_raw)
    port = raw.get("port")
    end = raw.get("endPort")
    if isinstance(port, str) and port.isdigit():
        problems.warning(f"{path}.port", f"{port!r} is a string; using the number {int(port)}")
        port = int(port)
    if isinstance(port, bool) or (port is not None and not isinstance(port, int | str)):
        problems.error(f"{path}.port", f"{port!r} is not a port number or name: the entry allows nothing")
        return None
    if isinstance(port, int) and not 1 <= port <= 65535:
        problems.error(f"{path}.port", f"{port} is not in 1-65535: the entry allows nothing")
        return None
    if isinstance(port, str) and not _PORT_NAME.fullmatch(port):
        problems.error(f"{path}.port", f"{port!r} is not a valid port name: the entry allows nothing")
        return None
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int):
            problems.error(f"{path}.endPort", f"{end!r} is not a port number: the entry allows nothing")
            return None
        if not isinstance(port, int):
            problems.error(f"{path}.endPort", "endPort needs a numeric port: the entry allows nothing")
            return None
        if not port <= end <= 65535:
            problems.error(
                f"{path}.endPort", f"{end} is below port {port} or above 65535: the entry allows nothing"
            )
            return None
        if end == port:
            end = None
    return PolicyPort(proto, port, end)
