"""The parts of Pod, Namespace and NetworkAttachmentDefinition that the compiler reads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.api.multus import (
    NETWORK_STATUS,
    NETWORKS,
    Attachment,
    interface_names,
    parse_network_status,
    parse_networks,
)
from mnp.api.refs import Diagnostic, ObjRef, Severity
from mnp.api.ruleset import Protocol

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Network:
    """A NetworkAttachmentDefinition; `cni_type` None when its config cannot be read."""

    ref: ObjRef
    cni_type: str | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class Pod:
    ref: ObjRef
    uid: str
    labels: Mapping[str, str]
    node: str
    phase: str
    host_network: bool
    ports: tuple[ContainerPort, ...] = ()
    # None: no usable network-status (never policed on its strength, never a peer).
    attachments: tuple[Attachment, ...] | None = None
    # True when attachments were derived from the networks annotation because network-status was
    # unreadable: interfaces are known (so the pod stays policed) but addresses are not.
    addresses_unknown: bool = False
    problems: tuple[Diagnostic, ...] = ()

    @property
    def is_peer(self) -> bool:
        return (
            self.phase == "Running"
            and not self.host_network
            and not self.addresses_unknown
            and bool(self.attachments)
        )

    @property
    def is_policeable(self) -> bool:
        return (
            not self.host_network
            and self.phase not in ("Succeeded", "Failed")
            and bool(self.node)
            and bool(self.attachments)
        )


def _meta(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def parse_namespace(raw: Mapping[str, Any]) -> Namespace:
    meta = _meta(raw)
    name = str(meta.get("name") or "")
    # The API server sets this label on every namespace; manifests read offline may lack it.
    labels = {**_str_map(meta.get("labels")), NAMESPACE_NAME_LABEL: name}
    return Namespace(name, labels)


def cni_type_of(config: Any) -> str:
    """The CNI type of a NAD config: top-level `type`, or the first plugin of a conflist."""
    if config is not None and not isinstance(config, str):
        raise ValueError(f"spec.config is a {type(config).__name__}, not a string of JSON")
    if not config or not config.strip():
        raise ValueError("spec.config is empty (configuration from a file on the node cannot be checked)")
    try:
        data = json.loads(config)
    except json.JSONDecodeError as e:
        raise ValueError(f"spec.config is not JSON: {e}") from None
    except RecursionError:
        raise ValueError("spec.config is not JSON: nested too deeply") from None
    if not isinstance(data, Mapping):
        raise ValueError("spec.config is not a JSON object")
    if isinstance(data.get("type"), str):
        return str(data["type"])
    plugins = data.get("plugins")
    if (
        isinstance(plugins, list)
        and plugins
        and isinstance(plugins[0], Mapping)
        and isinstance(plugins[0].get("type"), str)
    ):
        return str(plugins[0]["type"])
    raise ValueError("spec.config has no type and no plugins[0].type")


def parse_network(raw: Mapping[str, Any]) -> Network:
    meta = _meta(raw)
    ref = ObjRef(
        str(meta.get("namespace") or "default"), str(meta.get("name") or ""), "NetworkAttachmentDefinition"
    )
    spec = raw.get("spec")
    config = spec.get("config") if isinstance(spec, Mapping) else None
    try:
        return Network(ref, cni_type_of(config))
    except ValueError as e:
        return Network(ref, None, str(e))


def parse_pod(raw: Mapping[str, Any]) -> tuple[Pod, list[Diagnostic]]:
    """A pod as the compiler sees it; bad annotations become diagnostics, never exceptions."""
    meta = _meta(raw)
    ref = ObjRef(str(meta.get("namespace") or "default"), str(meta.get("name") or ""), "Pod")
    spec = raw.get("spec") if isinstance(raw.get("spec"), Mapping) else {}
    status = raw.get("status") if isinstance(raw.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    annotations = _str_map(meta.get("annotations"))
    problems: list[Diagnostic] = []
    attachments: tuple[Attachment, ...] | None = None
    unknown = False
    if NETWORK_STATUS in annotations:
        try:
            attachments = parse_network_status(annotations[NETWORK_STATUS], ref.namespace)
        except ValueError as e:
            field = f"metadata.annotations[{NETWORK_STATUS}]"
            attachments, unknown = _fallback_attachments(annotations, ref.namespace)
            what = "its interfaces come from the networks annotation and its addresses count nowhere"
            if attachments is None:
                what = "the pod cannot be policed"
            problems.append(Diagnostic(ref, field, f"{e}: {what}", Severity.ERROR))
    pod = Pod(
        ref=ref,
        uid=str(meta.get("uid") or ""),
        labels=_str_map(meta.get("labels")),
        node=str(spec.get("nodeName") or ""),
        phase=str(status.get("phase") or "Pending"),
        host_network=spec.get("hostNetwork") is True,
        ports=_container_ports(spec),
        attachments=attachments,
        addresses_unknown=unknown,
        problems=tuple(problems),
    )
    return pod, problems


def _fallback_attachments(
    annotations: Mapping[str, str], namespace: str
) -> tuple[tuple[Attachment, ...] | None, bool]:
    # network-status is unreadable but the pod has interfaces: keep policing them by name so a
    # broken annotation never opens a policed pod.
    try:
        selections = parse_networks(annotations.get(NETWORKS, ""), namespace)
    except ValueError:
        return None, False
    if not selections:
        return None, False
    names = interface_names(selections)
    return tuple(Attachment(s.network, n) for s, n in zip(selections, names, strict=True)), True


def _container_ports(spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    out: list[ContainerPort] = []
    for key in ("initContainers", "containers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for c in containers:
            ports = c.get("ports") if isinstance(c, Mapping) else None
            for p in ports if isinstance(ports, list) else []:
                if not isinstance(p, Mapping) or not isinstance(p.get("name"), str):
                    continue
                number, proto = p.get("containerPort"), p.get("protocol") or "TCP"
                if isinstance(number, int) and 1 <= number <= 65535 and proto in Protocol.__members__:
                    out.append(ContainerPort(p["name"], number, Protocol(proto)))
    return tuple(out)
