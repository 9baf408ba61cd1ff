"""The Multus annotations on a pod: requested networks and the network-status Multus writes back."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mnp.api.refs import ObjRef
from mnp.api.ruleset import IPAddress, is_valid_ifname

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NAD_KIND = "NetworkAttachmentDefinition"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One secondary interface of a pod: which network, which interface, which addresses."""

    network: ObjRef
    interface: str
    ips: tuple[IPAddress, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkSelection:
    """One entry of the networks annotation (what the pod asked for)."""

    network: ObjRef
    interface: str | None = None
    ips: tuple[str, ...] = ()
    mac: str | None = None


def _load_json(text: str) -> Any:
    """json.loads, with every way it fails on a string (nesting too deep too) as one ValueError."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    except RecursionError:  # "[[[[..." a few thousand deep: json gives up with RecursionError
        raise ValueError("not JSON: nested too deeply") from None


def parse_network_status(value: str, pod_namespace: str) -> tuple[Attachment, ...]:
    """Secondary attachments from network-status; raises ValueError saying what is wrong.

    The cluster default network entry (`"default": true`) and entries without an interface are not
    secondary attachments and are left out. Unparsable addresses or an interface named twice make
    the whole annotation invalid (we would otherwise under-count a pod's addresses silently, or
    police an interface for the wrong network).
    """
    data = _load_json(value)
    if not isinstance(data, list):
        raise ValueError("not a JSON list")
    out: list[Attachment] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise ValueError(f"[{i}] is not an object")
        if entry.get("default") is True:
            continue
        name, iface = entry.get("name"), entry.get("interface")
        if not isinstance(name, str) or not name:
            raise ValueError(f"[{i}].name is missing")
        if iface is None:
            continue
        if not isinstance(iface, str) or not is_valid_ifname(iface):
            raise ValueError(f"[{i}].interface {iface!r} is not an interface name")
        if iface in seen:
            # One netns has one net1: which network's policies would apply to it is unknowable.
            raise ValueError(f"[{i}].interface {iface!r} appears twice")
        seen.add(iface)
        ips = entry.get("ips") or []
        if not isinstance(ips, list):
            raise ValueError(f"[{i}].ips is not a list")
        addrs: list[IPAddress] = []
        for j, a in enumerate(ips):
            try:
                addrs.append(ipaddress.ip_address(str(a).split("/")[0]))
            except ValueError:
                raise ValueError(f"[{i}].ips[{j}] {a!r} is not an IP address") from None
        out.append(Attachment(ObjRef.parse(name, pod_namespace, NAD_KIND), iface, tuple(addrs)))
    return tuple(out)


def parse_networks(value: str, pod_namespace: str) -> tuple[NetworkSelection, ...]:
    """The networks annotation, comma form `[ns/]name[@iface]` or JSON list; raises ValueError."""
    text = value.strip()
    if not text:
        return ()
    if text.startswith("["):
        data = _load_json(text)
        if not isinstance(data, list):
            raise ValueError("not a JSON list")
        return tuple(_selection(e, i, pod_namespace) for i, e in enumerate(data))
    out = []
    for entry in text.split(","):
        entry = entry.strip()
        ref_text, _, iface = entry.partition("@")
        if not ref_text or ref_text.count("/") > 1:
            raise ValueError(f"{entry!r} is not [namespace/]name[@interface]")
        out.append(NetworkSelection(ObjRef.parse(ref_text, pod_namespace, NAD_KIND), iface or None))
    return tuple(out)


def _selection(entry: Any, i: int, pod_namespace: str) -> NetworkSelection:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ValueError(f"[{i}] needs a name")
    ns = entry.get("namespace") or pod_namespace
    iface = entry.get("interface")
    ips = entry.get("ips") or []
    mac = entry.get("mac")
    if not isinstance(ns, str) or (iface is not None and not isinstance(iface, str)):
        raise ValueError(f"[{i}] has a bad namespace or interface")
    if not isinstance(ips, list) or not all(isinstance(a, str) for a in ips):
        raise ValueError(f"[{i}].ips is not a list of strings")
    return NetworkSelection(
        ObjRef(ns, entry["name"], NAD_KIND), iface, tuple(ips), mac if isinstance(mac, str) else None
    )


def interface_names(selections: tuple[NetworkSelection, ...]) -> tuple[str, ...]:
    """The interface names Multus gives: the requested one, else net<position> counting from 1."""
    return tuple(s.interface or f"net{i}" for i, s in enumerate(selections, start=1))
