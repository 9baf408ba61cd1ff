"""Which secondary networks a pod gets, as Multus decides it (pure: pod + NADs in, plan out).

The pod's `k8s.v1.cni.cncf.io/networks` annotation names NetworkAttachmentDefinitions (comma form
`[ns/]name[@iface]` or JSON with interface, ips, mac); each becomes one CNI ADD of the NAD's config
with the interface name Multus would pick (`net<position>` unless requested), and the requested ips
and mac as runtimeConfig (which reach the plugin only if its config declares those capabilities).
The network-status annotation Multus writes afterwards is built here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mnp.api.errors import MnpError
from mnp.api.multus import NETWORKS, interface_names, parse_networks

# Pod condition / Event reasons for problems the user must fix; `mnp local wait` names these pods but
# does not wait for them.
NAD_MISSING = "NetworkAttachmentDefinitionMissing"
INVALID_NETWORKS = "InvalidNetworksAnnotation"
INVALID_NAD = "InvalidNetworkAttachmentDefinition"

NadKey = tuple[str, str]  # (namespace, name)


class AttachError(MnpError):
    """The pod's networks cannot be attached as asked; `reason` is the pod condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True, slots=True)
class AttachStep:
    """One CNI ADD: the NAD (ns/name), the interface in the pod, its config and runtimeConfig."""

    network: str
    ifname: str
    config: Mapping[str, Any]
    runtime_config: Mapping[str, Any]

    def to_raw(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "ifname": self.ifname,
            "config": dict(self.config),
            "runtimeConfig": dict(self.runtime_config),
        }

    @staticmethod
    def from_raw(raw: Mapping[str, Any]) -> AttachStep:
        return AttachStep(raw["network"], raw["ifname"], raw["config"], raw.get("runtimeConfig") or {})


def plan_attachments(
    pod: Mapping[str, Any], nads: Mapping[NadKey, Mapping[str, Any]]
) -> tuple[AttachStep, ...]:
    """The CNI ADDs for the pod's requested networks, in annotation order; raises AttachError.

    hostNetwork pods get none (as with Multus). A missing NAD, an unparsable annotation or an
    unusable NAD config is an AttachError naming the annotation or the NAD and what is wrong.
    """
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    if (pod.get("spec") or {}).get("hostNetwork"):
        return ()
    value = (meta.get("annotations") or {}).get(NETWORKS)
    if not value:
        return ()
    try:
        selections = parse_networks(str(value), namespace)
    except ValueError as e:
        raise AttachError(INVALID_NETWORKS, f"annotation {NETWORKS}: {e}") from None
    ifnames = interface_names(selections)
    if len(set(ifnames)) != len(ifnames):
        raise AttachError(INVALID_NETWORKS, f"annotation {NETWORKS}: two networks on one interface name")
    missing = [s.network for s in selections if (s.network.namespace, s.network.name) not in nads]
    if missing:
        names = ", ".join(f"{r.namespace}/{r.name}" for r in missing)
        raise AttachError(NAD_MISSING, f"NetworkAttachmentDefinition {names} not found")
    steps = []
    for selection, ifname in zip(selections, ifnames, strict=True):
        key = (selection.network.namespace, selection.network.name)
        config = nad_config(nads[key], f"{key[0]}/{key[1]}")
        runtime: dict[str, Any] = {}
        if selection.ips:
            runtime["ips"] = list(selection.ips)
        if selection.mac:
            runtime["mac"] = selection.mac
        steps.append(AttachStep(f"{key[0]}/{key[1]}", ifname, config, runtime))
    return tuple(steps)


def nad_config(nad: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """The CNI config of a NAD (JSON in spec.config), named after the NAD if it has no name."""
    text = (nad.get("spec") or {}).get("config")
    if not isinstance(text, str) or not text.strip():
        raise AttachError(INVALID_NAD, f"NetworkAttachmentDefinition {ref}: spec.config is empty")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise AttachError(
            INVALID_NAD, f"NetworkAttachmentDefinition {ref}: spec.config is not JSON: {e}"
        ) from None
    if not isinstance(config, dict) or not (isinstance(config.get("type"), str) or "plugins" in config):
        raise AttachError(
            INVALID_NAD, f"NetworkAttachmentDefinition {ref}: spec.config has no type and no plugins"
        )
    config.setdefault("name", ref.split("/", 1)[1])
    return config


def network_status(
    primary: Mapping[str, Any] | None, secondary: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The network-status list Multus writes: the cluster default network first, marked default."""
    out: list[dict[str, Any]] = []
    if primary is not None:
        entry = {k: v for k, v in primary.items() if k != "dns"}
        out.append({**entry, "default": True, "dns": dict(primary.get("dns") or {})})
    out.extend(dict(s) for s in secondary)
    return out


__all__ = [
    "INVALID_NAD",
    "INVALID_NETWORKS",
    "NAD_MISSING",
    "AttachError",
    "AttachStep",
    "nad_config",
    "network_status",
    "plan_attachments",
]
