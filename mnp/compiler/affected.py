"""Which policies a change can touch (pure), for incremental recompute in the controller.

A pod's ruleset depends on every policy that selects it, and a policy's rules depend on the pods and
namespaces its peers select. So a changed pod touches the policies whose target selector matches its
old or new labels and those with a peer that could select it (old or new); a changed namespace, the
policies with a namespace selector (and those in it); a changed NetworkAttachmentDefinition, the
policies naming it; a changed policy, itself. Erring on the side of more is safe (it only costs
time); missing one would leave a ruleset stale, so the controller checks this module against full
compiles in its tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mnp.api.cluster import Namespace, Network, Pod
from mnp.api.policy import Policy
from mnp.compiler.ports import has_named

Parsed = Pod | Namespace | Network | Policy


@dataclass(frozen=True, slots=True)
class Change:
    """One object before and after (None when it did not exist / no longer exists)."""

    old: Parsed | None
    new: Parsed | None


def _peer_could_select(policy: Policy, pod: Pod, ns_labels: Mapping[str, str]) -> bool:
    for egress, rule in policy.isolated_rules:
        if rule.peers is None:
            # Any peer: no addresses are listed, except that named egress ports resolve on every pod.
            if egress and has_named(rule.ports):
                return True
            continue
        for peer in rule.peers:
            if peer.ip_block is not None or not peer.valid:
                continue
            if peer.namespace_selector is None:
                if pod.ref.namespace != policy.ref.namespace:
                    continue
            elif not peer.namespace_selector.matches(ns_labels):
                continue
            if peer.pod_selector is None or peer.pod_selector.matches(pod.labels):
                return True
    return False


def _has_namespace_selector(policy: Policy) -> bool:
    return any(
        peer.namespace_selector is not None for _, rule in policy.isolated_rules for peer in rule.peers or ()
    )


def affected_policies(
    policies: Iterable[Policy], changes: Iterable[Change], namespace_labels: Mapping[str, Mapping[str, str]]
) -> set[str]:
    """The keys (ns/name) of the policies whose rulesets the changes can alter."""
    return affected(policies, changes, namespace_labels)[0]


def affected(
    policies: Iterable[Policy], changes: Iterable[Change], namespace_labels: Mapping[str, Mapping[str, str]]
) -> tuple[set[str], set[str]]:
    """(the policies whose rulesets the changes can alter, those of them whose peers can have changed).

    A pod that only enters or leaves a policy's targets leaves the policy's peers as they were, so
    the incremental recompute can keep them.
    """
    policies = list(policies)
    out: set[str] = set()
    peers: set[str] = set()
    for change in changes:
        for obj in (change.old, change.new):
            if obj is None:
                continue
            if isinstance(obj, Policy):
                peers.add(obj.key)
            elif isinstance(obj, Pod):
                labels = namespace_labels.get(obj.ref.namespace, {})
                for p in policies:
                    if _peer_could_select(p, obj, labels):
                        peers.add(p.key)
                    elif obj.ref.namespace == p.ref.namespace and p.pod_selector.matches(obj.labels):
                        out.add(p.key)
            elif isinstance(obj, Namespace):
                peers.update(
                    p.key for p in policies if _has_namespace_selector(p) or p.ref.namespace == obj.name
                )
            elif isinstance(obj, Network):
                peers.update(p.key for p in policies if obj.ref in p.networks)
    return out | peers, peers


__all__ = ["Change", "affected", "affected_policies"]
