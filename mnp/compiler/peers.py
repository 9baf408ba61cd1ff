"""Policy peers → addresses on the policy's networks, with the pod each address came from."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mnp.api.cluster import NAMESPACE_NAME_LABEL, Pod
from mnp.api.policy import Policy, PolicyPeer
from mnp.api.refs import ObjRef
from mnp.api.ruleset import IPAddress, Peer


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """A ruleset peer plus the pod it belongs to (None for ipBlock peers)."""

    peer: Peer
    pod: Pod | None


@dataclass(frozen=True, slots=True)
class Inventory:
    """Read-only indexes over the snapshot that peer resolution needs."""

    namespace_labels: Mapping[str, Mapping[str, str]]
    pods_by_namespace: Mapping[str, Sequence[Pod]]

    def labels_of_namespace(self, name: str) -> Mapping[str, str]:
        return self.namespace_labels.get(name) or {NAMESPACE_NAME_LABEL: name}

    def namespaces(self) -> Iterable[str]:
        return sorted(set(self.namespace_labels) | set(self.pods_by_namespace))


def peer_sort_key(p: PeerAddress) -> tuple[object, ...]:
    return p.peer.sort_key()


def resolve_peers(
    peers: tuple[PolicyPeer, ...] | None, policy: Policy, networks: frozenset[ObjRef], inv: Inventory
) -> tuple[PeerAddress, ...] | None:
    """Addresses of a rule's peers; None = any peer, () = the peers select no address.

    Selector peers contribute every address they have on any network the policy polices, as the
    reference implementations do; addresses on other networks never count.
    """
    if peers is None:
        return None
    found: dict[tuple[object, ...], PeerAddress] = {}
    for peer in peers:
        for addr in _addresses(peer, policy, networks, inv):
            key = addr.peer.address_key()
            best = found.get(key)
            if best is None or (addr.peer.pod or "") < (best.peer.pod or ""):
                found[key] = addr
    return tuple(sorted(found.values(), key=peer_sort_key))


def _addresses(
    peer: PolicyPeer, policy: Policy, networks: frozenset[ObjRef], inv: Inventory
) -> Iterable[PeerAddress]:
    if not peer.valid:
        return
    if peer.ip_block is not None:
        yield PeerAddress(Peer(peer.ip_block.cidr, peer.ip_block.excepts), None)
        return
    if peer.namespace_selector is None:
        namespaces: Iterable[str] = [policy.ref.namespace]  # podSelector alone: the policy's namespace
    else:
        ns_sel = peer.namespace_selector
        namespaces = [n for n in inv.namespaces() if ns_sel.matches(inv.labels_of_namespace(n))]
    for ns in namespaces:
        for pod in inv.pods_by_namespace.get(ns, ()):
            if not pod.is_peer or (
                peer.pod_selector is not None and not peer.pod_selector.matches(pod.labels)
            ):
                continue
            yield from pod_addresses(pod, networks)


def pod_addresses(pod: Pod, networks: frozenset[ObjRef]) -> Iterable[PeerAddress]:
    name = str(pod.ref)
    for att in pod.attachments or ():
        if att.network in networks:
            for ip in att.ips:
                yield PeerAddress(_host_peer(ip, name), pod)


@functools.lru_cache(maxsize=1 << 17)
def _host_peer(ip: IPAddress, pod: str) -> Peer:
    """The /32 or /128 peer of one pod address; shared between compiles (a Peer is immutable), which
    spares the incremental recompute building and sorting the same networks again."""
    prefix = 32 if ip.version == 4 else 128
    network = (
        ipaddress.IPv4Network((int(ip), prefix))
        if ip.version == 4
        else ipaddress.IPv6Network((int(ip), prefix))
    )
    return Peer(network, (), pod)
