"""A small simulated data centre: a fabric bridge, nodes, and pods with Multus-style macvlan links.

The fabric netns `<prefix>-fab` holds bridge br0; each node netns `<prefix>-nN` has `eth0`, a veth
into br0; each pod netns `<prefix>-<name>` gets its secondary interfaces from the real macvlan CNI
plugin (static IPAM, master eth0) run inside its node netns. Nothing touches the root namespace, and
`close()` removes everything this object made even after a partial failure.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from mnp.api.errors import NetnsError
from mnp.local.nodes.cni import CniError, cni_add, cni_del, network_status_entry
from mnp.local.nodes.netns import (
    POD_SYSCTLS,
    create_netns,
    delete_netns,
    list_netns,
    netns_exists,
    netns_path,
    set_sysctls,
)

POD_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One secondary network of a pod: NAD `ns/name`, interface name, static addresses with prefix."""

    network: str
    ifname: str
    addresses: tuple[str, ...]


@dataclass(slots=True)
class PodNet:
    """A pod's netns and its attachments, with the network-status Multus would write."""

    name: str
    node: int
    netns_name: str
    netns_path: str
    attachments: tuple[Attachment, ...]
    network_status: list[dict[str, Any]] = field(default_factory=list)
    container_id: str = ""
    cni_results: dict[str, dict[str, Any]] = field(default_factory=dict)  # ifname -> CNI ADD result

    def ips(self, ifname: str) -> tuple[str, ...]:
        """The addresses (without prefix length) CNI put on interface `ifname`."""
        for entry in self.network_status:
            if entry["interface"] == ifname:
                return tuple(entry["ips"])
        raise KeyError(f"pod {self.name} has no interface {ifname}")


def macvlan_config(attachment: Attachment, cni_version: str = "0.4.0") -> dict[str, Any]:
    """The NetworkAttachmentDefinition config the fabric uses: macvlan bridge on eth0, static IPAM."""
    return {
        "cniVersion": cni_version,
        "name": attachment.network.split("/")[-1],
        "type": "macvlan",
        "mode": "bridge",
        "master": "eth0",
        "ipam": {"type": "static", "addresses": [{"address": a} for a in attachment.addresses]},
    }


class Fabric:
    """Fabric bridge + `nodes` node netns, built on construction; a context manager that cleans up."""

    def __init__(self, prefix: str, nodes: int = 2) -> None:
        if nodes < 1:
            raise ValueError("a fabric needs at least one node")
        self.prefix = prefix
        self.fabric_netns = f"{prefix}-fab"
        self.node_names = [f"{prefix}-n{i}" for i in range(1, nodes + 1)]
        self.pods: dict[str, PodNet] = {}
        self._made: list[str] = []  # netns names this object created, in creation order
        self._closed = False
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        fab = self.fabric_netns
        self._create(fab)
        # STP off: ports forward at once. Snooping off: with no MLD querier a stale or partial
        # group table could swallow the neighbour solicitations the tests rely on.
        _ip(fab, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
        _ip(fab, "link", "set", "br0", "up")
        for i, node in enumerate(self.node_names, start=1):
            self._create(node)
            set_sysctls(
                netns_path(node), {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0}
            )
            # Both veth ends are born inside our own namespaces, never in the root one.
            _ip(fab, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", node)
            _ip(fab, "link", "set", f"v{i}", "master", "br0", "up")
            _ip(node, "link", "set", "eth0", "up")

    def _create(self, name: str) -> str:
        path = create_netns(name)
        self._made.append(name)
        return path

    def node_netns(self, node: int) -> str:
        """The netns name of node `node` (1-based)."""
        if not 1 <= node <= len(self.node_names):
            raise ValueError(f"no node {node} (fabric has {len(self.node_names)})")
        return self.node_names[node - 1]

    def add_pod(self, name: str, node: int, attachments: Sequence[Attachment]) -> PodNet:
        """A pod netns on `node` with lo up, the pod sysctls, and one macvlan per attachment via CNI ADD."""
        if self._closed:
            raise NetnsError("fabric is closed")
        if name in self.pods:
            raise ValueError(f"pod {name} exists")
        node_ns = self.node_netns(node)
        ns_name = f"{self.prefix}-{name}"
        path = self._create(ns_name)
        pod = PodNet(name, node, ns_name, path, tuple(attachments), [], container_id=f"cid-{ns_name}")
        self.pods[name] = pod
        try:
            set_sysctls(path, POD_SYSCTLS)  # before any link exists: DAD and ARP apply to new links
            for att in attachments:
                result = cni_add(
                    macvlan_config(att),
                    netns=path,
                    ifname=att.ifname,
                    container_id=pod.container_id,
                    pod_namespace=POD_NAMESPACE,
                    pod_name=name,
                    node_netns=node_ns,
                )
                pod.cni_results[att.ifname] = result
                pod.network_status.append(network_status_entry(att.network, result, att.ifname))
        except BaseException:
            with contextlib.suppress(Exception):  # close() retries; the ADD failure is what to report
                self.remove_pod(name)
            raise
        return pod

    def remove_pod(self, name: str) -> None:
        """CNI DEL of each attachment, then delete the pod netns; a missing pod is not an error."""
        pod = self.pods.pop(name, None)
        if pod is None:
            return
        errors: list[Exception] = []
        # Without its node netns there is nowhere to run the plugin, and nothing left to undo there.
        node_alive = netns_exists(self.node_netns(pod.node))
        for att in reversed(pod.attachments if node_alive else ()):
            try:
                cni_del(
                    macvlan_config(att),
                    netns=pod.netns_path,
                    ifname=att.ifname,
                    container_id=pod.container_id,
                    pod_namespace=POD_NAMESPACE,
                    pod_name=name,
                    node_netns=self.node_netns(pod.node),
                    prev_result=pod.cni_results.get(att.ifname),  # libcni's cached result
                )
            except CniError as e:
                errors.append(e)
        try:
            delete_netns(pod.netns_name)
            if pod.netns_name in self._made:
                self._made.remove(pod.netns_name)
        except NetnsError as e:
            errors.append(e)
        if errors:
            raise errors[0]

    def add_address(self, pod: str, ifname: str, address: str) -> None:
        """An extra address (with prefix length) on a pod interface, e.g. a second probe source."""
        extra = ("nodad",) if ":" in address else ()
        _ip(self.pods[pod].netns_name, "addr", "add", address, "dev", ifname, *extra)

    def del_address(self, pod: str, ifname: str, address: str) -> None:
        _ip(self.pods[pod].netns_name, "addr", "del", address, "dev", ifname)

    def close(self) -> None:
        """Remove pods (CNI DEL), nodes and the fabric; safe to call twice and after partial failure."""
        self._closed = True
        first: BaseException | None = None
        for name in list(self.pods):
            try:
                self.remove_pod(name)
            except Exception as e:
                first = first or e
        # Whatever remains (pods whose DEL failed, nodes, fabric), newest first: deleting a pod netns
        # destroys its macvlan links, deleting a node netns takes the veth pair with it.
        for ns in reversed(list(self._made)):
            try:
                delete_netns(ns)
                self._made.remove(ns)
            except Exception as e:
                first = first or e
        self.pods.clear()
        if first is not None:
            raise first

    def __enter__(self) -> Fabric:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> Mapping[str, Any]:
        """A summary for logs and the demo: nodes and each pod's network status."""
        return {
            "fabric": self.fabric_netns,
            "nodes": list(self.node_names),
            "pods": {p.name: {"node": p.node, "networks": p.network_status} for p in self.pods.values()},
        }


def remove_leftovers(prefix: str) -> list[str]:
    """Delete every netns a Fabric with `prefix` may have left after a crash; returns their names.

    Pods go first, then nodes, then the fabric, so macvlan links never outlive their master. No CNI
    DEL is run: static IPAM keeps no state, and the links go with their namespaces.
    """
    fab = f"{prefix}-fab"
    names = list_netns(prefix + "-")
    node = re.compile(rf"^{re.escape(prefix)}-n[0-9]+$")
    order = sorted(names, key=lambda n: (n == fab, bool(node.match(n)), n))
    for name in order:
        delete_netns(name)
    return order


def _ip(netns: str, *args: str) -> None:
    proc = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip -n {netns} {' '.join(args)}: {proc.stderr.strip()}")


__all__ = ["Attachment", "Fabric", "POD_NAMESPACE", "PodNet", "macvlan_config", "remove_leftovers"]
