"""How mnp addresses an API resource: group, version, plural and scope, plus the URL paths built from them.

Constants name every resource mnp itself reads or writes; anything else comes from discovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Resource:
    """One served resource. `kind` is informative (errors, Events) and not part of equality."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str = field(default="", compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`plural.group` as the API server names it in messages (`podnetworkrulesets.mnp.dev`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def prefix(self) -> str:
        """The group-version root: /api/v1 or /apis/<group>/<version>."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The collection path (name None), or an object's path, or one of its subresources."""
        parts = [self.prefix()]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    def describe(self, namespace: str | None, name: str | None) -> str:
        """`Kind ns/name` (or `Kind name`, or the plural for a collection) for messages."""
        what = self.kind or self.qualified
        if not name:
            return f"{what} in {namespace}" if namespace and self.namespaced else what
        return f"{what} {namespace}/{name}" if namespace and self.namespaced else f"{what} {name}"


PODS = Resource("", "v1", "pods", True, "Pod")
NODES = Resource("", "v1", "nodes", False, "Node")
NAMESPACES = Resource("", "v1", "namespaces", False, "Namespace")
EVENTS = Resource("", "v1", "events", True, "Event")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", True, "ServiceAccount")
LEASES = Resource("coordination.k8s.io", "v1", "leases", True, "Lease")
DEPLOYMENTS = Resource("apps", "v1", "deployments", True, "Deployment")
REPLICASETS = Resource("apps", "v1", "replicasets", True, "ReplicaSet")
DAEMONSETS = Resource("apps", "v1", "daemonsets", True, "DaemonSet")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition")
NADS = Resource(
    "k8s.cni.cncf.io", "v1", "network-attachment-definitions", True, "NetworkAttachmentDefinition"
)
MNPS = Resource("k8s.cni.cncf.io", "v1beta1", "multi-networkpolicies", True, "MultiNetworkPolicy")
RULESETS = Resource("mnp.dev", "v1alpha1", "podnetworkrulesets", True, "PodNetworkRuleset")
