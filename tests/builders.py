"""Small builders of Kubernetes manifests for tests (raw dicts, as an API server would return them)."""

from __future__ import annotations

import json
from typing import Any

from mnp.api.cluster import parse_namespace, parse_network, parse_pod
from mnp.api.policy import parse_policy
from mnp.compiler.compile import CompileOptions, CompileResult, Snapshot, compile_rulesets


def nad(name: str, ns: str = "default", cni_type: str = "macvlan", conflist: bool = False) -> dict[str, Any]:
    plugin = {"type": cni_type, "master": "eth0", "ipam": {"type": "static"}}
    config = {"cniVersion": "0.4.0", "name": name, "plugins": [plugin]} if conflist else {"cniVersion": "0.3.1", "name": name, **plugin}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"config": json.dumps(config)},
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    name: str,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    nets: dict[str, tuple[str, list[str]]] | None = None,
    node: str = "node-1",
    phase: str = "Running",
    host_network: bool = False,
    ports: list[tuple[str, int, str]] | None = None,
    network_status: str | None = None,
    networks: str | None = None,
) -> dict[str, Any]:
    """`nets`: {"ns/nad": ("net1", ["192.0.2.10", ...])}; the network-status Multus would write."""
    nets = nets if nets is not None else {}
    status = [{"name": "cbr0", "interface": "eth0", "ips": ["10.244.0.9"], "default": True}]
    status += [{"name": n, "interface": i, "ips": ips, "mac": "02:00:00:00:00:01", "dns": {}} for n, (i, ips) in nets.items()]
    annotations = {
        "k8s.v1.cni.cncf.io/networks": networks if networks is not None else ",".join(f"{n}@{i}" for n, (i, _) in nets.items()),
        "k8s.v1.cni.cncf.io/network-status": network_status if network_status is not None else json.dumps(status),
    }
    if not nets and network_status is None:
        del annotations["k8s.v1.cni.cncf.io/network-status"]
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}, "annotations": annotations},
        "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [container]},
        "status": {"phase": phase},
    }


def policy(name: str, spec: dict[str, Any], ns: str = "default", networks: str | None = "net-a") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "generation": 1}
    if networks is not None:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/policy-for": networks}
    return {"apiVersion": "k8s.cni.cncf.io/v1beta1", "kind": "MultiNetworkPolicy", "metadata": meta, "spec": spec}


def snapshot(objs: list[dict[str, Any]]) -> Snapshot:
    policies, pods, namespaces, networks = [], [], [], []
    for o in objs:
        if o["kind"] == "MultiNetworkPolicy":
            policies.append(parse_policy(o)[0])
        elif o["kind"] == "Pod":
            pods.append(parse_pod(o)[0])
        elif o["kind"] == "Namespace":
            namespaces.append(parse_namespace(o))
        else:
            networks.append(parse_network(o))
    return Snapshot(tuple(policies), tuple(pods), tuple(namespaces), tuple(networks))


def compile_objs(objs: list[dict[str, Any]], plugins: frozenset[str] = frozenset({"macvlan"})) -> CompileResult:
    return compile_rulesets(snapshot(objs), CompileOptions(network_plugins=plugins))
