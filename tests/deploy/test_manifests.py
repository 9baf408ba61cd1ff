"""deploy/: what `kubectl apply -f crds/ -f deploy/` and `kubectl apply -k deploy/` would send, checked
offline: every object is a well-formed Kubernetes object, the workloads run what mnp's CLI accepts, and
the local cluster's kubelet can run the same pod templates unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from mnp.cli import build_parser
from mnp.local.layout import PASSTHROUGH_PATHS, Layout
from mnp.local.nodes.podspec import ContainerSpec, PodContext, container_spec
from tests.deploy.manifests import (
    CRDS,
    DEPLOY,
    containers,
    deploy_files,
    documents,
    find,
    kustomize,
    model_name,
    unknown_fields,
)

IMAGE = "ghcr.io/mnp-dev/mnp:0.1.0"
CRI_SOCKET = "/run/containerd/containerd.sock"


def _all_objects() -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for every document of deploy/, of kustomize's rendering, and of crds/."""
    found = [
        (f"{p.relative_to(DEPLOY.parent)}#{i}", d) for p in deploy_files() for i, d in enumerate(documents(p))
    ]
    found += [(f"kustomize#{i}", d) for i, d in enumerate(kustomize())]
    found += [
        (f"{p.relative_to(CRDS.parent)}#{i}", d)
        for p in sorted(CRDS.glob("*.yaml"))
        for i, d in enumerate(documents(p))
    ]
    return found


def _kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "Kustomization").read_text()))


def _agent() -> dict[str, Any]:
    return find(kustomize(), "DaemonSet", "mnp-agent")


def _controller() -> dict[str, Any]:
    return find(kustomize(), "Deployment", "mnp-controller")


def test_the_kustomization_renders_every_file_of_deploy_and_nothing_else() -> None:
    listed = _kustomization()["resources"]
    assert sorted(listed) == [p.name for p in deploy_files()]
    rendered = {(d["kind"], d["metadata"]["name"]) for d in kustomize()}
    in_files = {(d["kind"], d["metadata"]["name"]) for p in deploy_files() for d in documents(p)}
    assert rendered == in_files


def test_the_namespace_is_the_first_file_kubectl_applies_from_deploy() -> None:
    first = documents(deploy_files()[0])
    assert [(d["kind"], d["metadata"]["name"]) for d in first] == [("Namespace", "mnp-system")]


def test_every_object_has_only_fields_the_kubernetes_models_know() -> None:
    objects = _all_objects()
    assert len(objects) > 20
    api = client.ApiClient()
    for where, obj in objects:
        assert unknown_fields(obj, model_name(obj)) == [], where
        # The client's own deserializer (as for a response body) also checks required fields.
        model = api.deserialize(json.dumps(obj), model_name(obj), "application/json")
        assert model.metadata.name == obj["metadata"]["name"], where


def test_the_strict_check_names_a_misspelt_field_where_the_client_would_drop_it() -> None:
    agent = _agent()
    containers(agent)[0]["volumeMounts"][1]["mountPropogation"] = "HostToContainer"
    containers(agent)[0]["resources"]["limits"]["memory"] = 512
    assert unknown_fields(agent, "V1DaemonSet") == [
        "spec.template.spec.containers[0].resources.limits.memory: expected str, got 512",
        "spec.template.spec.containers[0].volumeMounts[1].mountPropogation: not a field of V1VolumeMount",
    ]


def test_the_crds_are_apiextensions_v1_and_namespaced() -> None:
    crds = [d for p in sorted(CRDS.glob("*.yaml")) for d in documents(p)]
    assert {d["metadata"]["name"] for d in crds} == {
        "multi-networkpolicies.k8s.cni.cncf.io",
        "podnetworkrulesets.mnp.dev",
    }
    for crd in crds:
        assert (crd["apiVersion"], crd["kind"]) == ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        assert crd["spec"]["scope"] == "Namespaced"


def test_the_image_is_set_in_the_kustomization_and_every_container_uses_it() -> None:
    (image,) = _kustomization()["images"]
    assert f"{image['newName']}:{image['newTag']}" == IMAGE
    workloads = [d for d in kustomize() if d["kind"] in ("DaemonSet", "Deployment")]
    workloads += [d for p in deploy_files() for d in documents(p) if d["kind"] in ("DaemonSet", "Deployment")]
    assert len(workloads) == 4
    assert {c["image"] for w in workloads for c in containers(w)} == {IMAGE}


def test_the_agent_runs_privileged_on_the_host_network_of_every_node() -> None:
    agent = _agent()
    pod = agent["spec"]["template"]["spec"]
    (container,) = containers(agent)
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["serviceAccountName"] == "mnp-agent"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert container["securityContext"] == {"privileged": True, "runAsUser": 0}
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in container[
        "env"
    ]
    assert agent["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }


def test_the_agent_mounts_the_cri_socket_it_is_told_to_use_and_the_netns_dir() -> None:
    agent = _agent()
    (container,) = containers(agent)
    assert f"--container-runtime-endpoint=unix://{CRI_SOCKET}" in container["command"]
    volumes = {v["name"]: v["hostPath"] for v in agent["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts[CRI_SOCKET]["name"]] == {"path": CRI_SOCKET, "type": "Socket"}
    netns = mounts["/var/run/netns"]
    assert netns["mountPropagation"] == "HostToContainer"
    assert volumes[netns["name"]] == {"path": "/var/run/netns", "type": "DirectoryOrCreate"}


def test_the_controller_runs_two_unprivileged_replicas_with_leader_election() -> None:
    controller = _controller()
    pod = controller["spec"]["template"]["spec"]
    (container,) = containers(controller)
    assert controller["spec"]["replicas"] == 2
    assert "--leader-elect" in container["command"]
    assert "--leader-election-namespace=mnp-system" in container["command"]
    assert pod["serviceAccountName"] == "mnp-controller"
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == controller["spec"]["selector"]["matchLabels"]
    )


def test_the_probes_ask_the_port_the_process_serves_health_on() -> None:
    for workload, port in ((_agent(), 9101), (_controller(), 9102)):
        (container,) = containers(workload)
        assert f"--health-address=:{port}" in container["command"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_the_agent_runs_a_command_line_mnp_agent_accepts() -> None:
    (container,) = containers(_agent())
    command = container["command"]
    assert command[:2] == ["mnp", "agent"] and "args" not in container
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown flag
    assert args.container_runtime_endpoint == f"unix://{CRI_SOCKET}"
    assert (args.health_address, args.metrics_address, args.log_format) == (":9101", ":9101", "json")


def test_the_controller_runs_a_command_line_mnp_controller_accepts() -> None:
    (container,) = containers(_controller())
    command = container["command"]
    assert command[:2] == ["mnp", "controller"] and "args" not in container
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown flag
    assert (args.leader_elect, args.leader_election_namespace) == (True, "mnp-system")
    assert (args.health_address, args.metrics_address, args.log_format) == (":9102", ":9102", "json")
    # mnp/controller/main.py names the Lease holder after the pod.
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]


def test_no_volume_hides_a_directory_the_local_cluster_shares_with_the_machine() -> None:
    # The local kubelet runs containers on the machine's filesystem: a volume at /tmp would hide the
    # cluster's own state dir (and so the pod's netns) from the container.
    for workload in (_agent(), _controller()):
        for container in containers(workload):
            targets = {m["mountPath"].rstrip("/") or "/" for m in container.get("volumeMounts", [])}
            assert not targets & set(PASSTHROUGH_PATHS), workload["metadata"]["name"]


def _local_pod(workload: dict[str, Any]) -> dict[str, Any]:
    template = workload["spec"]["template"]
    meta = {**template["metadata"], "name": "x", "namespace": "mnp-system", "uid": "u"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {**template["spec"], "nodeName": "node-1"},
    }


@pytest.mark.parametrize("name", ["mnp-agent", "mnp-controller"])
def test_the_local_clusters_kubelet_runs_the_pod_template_unchanged(name: str, tmp_path: Path) -> None:
    workload = next(
        d for d in kustomize() if d["metadata"]["name"] == name and "template" in d.get("spec", {})
    )
    layout = Layout(tmp_path)
    ctx = PodContext(
        host_ips=("198.51.100.1",),
        pod_ips=("192.0.2.5",),
        host_path=lambda p: layout.host_path("node-1", p),
        empty_dir_root=tmp_path / "empty",
        service_account_dir=tmp_path / "sa",
    )
    pod = _local_pod(workload)
    for container in containers(workload):
        spec = container_spec(pod, container["name"], ctx)  # InvalidInput names what it cannot run
        assert isinstance(spec, ContainerSpec)
        assert spec.argv == tuple(container["command"])
        if name == "mnp-agent":
            assert ("NODE_NAME", "node-1") in spec.env
            sources = {m.target: m.source for m in spec.mounts}
            # The agent on node-1 of the local cluster talks to node-1's own containerd.
            assert sources[CRI_SOCKET] == layout.node_dir("node-1") / "containerd.sock"
            assert "/var/run/netns" in sources
