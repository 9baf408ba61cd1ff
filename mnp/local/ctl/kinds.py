"""A served resource as the verbs see it, and how they print it (`pod`, `podnetworkruleset.mnp.dev`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    """One served resource: where it lives (group, version, plural), its kind and scope."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def display(self) -> str:
        """`pod` or `multinetworkpolicy.k8s.cni.cncf.io`, as kubectl names a kind in its output."""
        return self.kind.lower() + (f".{self.group}" if self.group else "")


class UnknownKind(LookupError):
    """The server serves no resource by this name (or this apiVersion and kind)."""


POD = Kind("", "v1", "Pod", "pods", True)
NODE = Kind("", "v1", "Node", "nodes", False)
MULTI_NETWORK_POLICY = Kind("k8s.cni.cncf.io", "v1beta1", "MultiNetworkPolicy", "multi-networkpolicies", True)
POD_NETWORK_RULESET = Kind("mnp.dev", "v1alpha1", "PodNetworkRuleset", "podnetworkrulesets", True)

__all__ = ["MULTI_NETWORK_POLICY", "NODE", "POD", "POD_NETWORK_RULESET", "Kind", "UnknownKind"]
