"""The node process of the local cluster: a small kubelet for one node.

It registers its Node (Ready, addresses, pod CIDRs) and renews the node's Lease, watches the pods
bound to its node and every NetworkAttachmentDefinition, and runs one worker per pod: set up
(sandbox, Multus networks, the API server on the pod's loopback (apiproxy), network-status, service
account, processes), report status, and on deletion tear everything down before removing the object
(graceful deletion, as the real kubelet).
At start it removes whatever an earlier run on this node left (sandboxes, links, processes): pods
still in the API are then set up afresh.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mnp.kube.client import Client, PatchType
from mnp.kube.errors import AlreadyExists, KubeApiError, KubeNotFound
from mnp.kube.events import EventRecorder, now_timestamp
from mnp.kube.lease import NODE_LEASE_NAMESPACE, renew_lease
from mnp.kube.resources import NADS, NAMESPACES, NODES, PODS, SERVICEACCOUNTS
from mnp.kube.watch import EventType, Informer, WatchEvent
from mnp.local.kubelet import podrun
from mnp.local.kubelet.apiproxy import ApiProxy, ApiProxyError
from mnp.local.kubelet.attach import AttachError, network_status, plan_attachments
from mnp.local.kubelet.podrun import NodeEnv, PodRecord, PodSetupError
from mnp.local.kubelet.status import PodFacts, pod_status, waiting_statuses
from mnp.local.nodes.containers import PodProcesses, RestartPolicy, kill_all_in_cgroup
from mnp.local.nodes.cri import CriError
from mnp.local.nodes.podspec import IMAGE_PATH, PodContext, pod_container_specs

log = logging.getLogger(__name__)

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
LEASE_SECONDS = 40
HEARTBEAT_S = 10.0
RETRY_S = (0.5, 1, 2, 5, 10)
KUBELET_VERSION = "v1.31.0-mnp"
# Containers run host binaries; `mnp` (deploy/ runs `mnp agent`, `mnp controller`) is next to the
# interpreter running the node, so its scripts dir leads the image PATH (a container's env overrides it).
CONTAINER_PATH = f"{Path(sys.executable).parent}:{IMAGE_PATH}"


class Kubelet:
    """One node's kubelet; `run()` until cancelled."""

    def __init__(self, client: Client, env: NodeEnv, api_server: str, ca_pem: str) -> None:
        self.client = client
        self.env = env
        self.api_host, self.api_port = _host_port(api_server)
        self.ca_pem = ca_pem
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={env.node.name}")
        self.nads = Informer(client, NADS)
        self.workers: dict[str, PodWorker] = {}
        self.ready = asyncio.Event()
        self._owner: dict[str, Any] | None = None
        self.events = EventRecorder(client, "kubelet", env.node.name)

    @property
    def name(self) -> str:
        return self.env.node.name

    async def run(self) -> None:
        await asyncio.to_thread(self._remove_leftovers)
        await self.register()
        self.pods.add_handler(self._on_pod)
        self.nads.add_handler(self._on_nad)
        tasks = [
            asyncio.create_task(self.nads.run(), name="nads"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        await self.nads.synced.wait()  # a pod's networks are resolved against a complete NAD list
        tasks.append(asyncio.create_task(self.pods.run(), name="pods"))
        await self.pods.synced.wait()
        self.ready.set()
        log.info("node ready", extra={"node": self.name})
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for w in list(self.workers.values()):
                w.task.cancel()

    # ---- node ------------------------------------------------------------------------------------

    def node_object(self) -> dict[str, Any]:
        node = self.env.node
        stamp = now_timestamp()
        addresses = [{"type": "InternalIP", "address": ip} for ip in self.env.host_ips]
        addresses.append({"type": "Hostname", "address": node.name})
        capacity = {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }

        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": {
                    "kubernetes.io/hostname": node.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"podCIDR": node.pod_cidrs[0], "podCIDRs": list(node.pod_cidrs)},
            "status": {
                "conditions": [
                    condition(
                        "MemoryPressure",
                        "False",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                    ),
                    condition(
                        "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                    ),
                    condition(
                        "PIDPressure",
                        "False",
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    ),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": addresses,
                "capacity": capacity,
                "allocatable": capacity,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kernelVersion": _kernel(),
                    "osImage": "mnp local cluster",
                    "containerRuntimeVersion": "containerd://" + self._runtime_version(),
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def _runtime_version(self) -> str:
        try:
            with self.env.cri(timeout=5.0) as cri:
                return cri.version().runtime_version
        except Exception:  # informational only
            return "unknown"

    async def register(self) -> None:
        """Create the Node, or bring an existing one's labels, spec and status up to date."""
        body = await asyncio.to_thread(self.node_object)
        try:
            await self.client.create(NODES, {k: v for k, v in body.items() if k != "status"})
        except KubeApiError as e:
            if e.code != 409:
                raise
            await self.client.patch(NODES, self.name, {"metadata": body["metadata"], "spec": body["spec"]})
        node = await self.client.patch_status(NODES, self.name, {"status": body["status"]})
        self._owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"]["uid"]}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NODE_LEASE_NAMESPACE}}
        with contextlib.suppress(AlreadyExists):
            await self.client.create(NAMESPACES, namespace)
        await self._renew_lease()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._renew_lease()
            except KubeApiError as e:
                log.warning("node lease renewal failed", extra={"node": self.name, "error": str(e)})

    async def _renew_lease(self) -> None:
        await renew_lease(
            self.client, NODE_LEASE_NAMESPACE, self.name, self.name, LEASE_SECONDS, owner=self._owner
        )

    # ---- pods ------------------------------------------------------------------------------------

    def _remove_leftovers(self) -> None:
        """Undo what an earlier run of this node left: each recorded pod, then any other sandbox."""
        for path, record in podrun.records(self.env):
            if record is None:
                podrun.remove_pod_dir(path)
                continue
            cgroup = self.env.runtime.pod_cgroup(record.uid)

            def kill(cgroup: str = cgroup) -> None:
                kill_all_in_cgroup(cgroup)

            errors = podrun.teardown(self.env, record, kill)
            if errors:
                log.warning(
                    "leftover pod not fully removed",
                    extra={"pod": f"{record.namespace}/{record.name}", "errors": errors},
                )
        with self.env.cri() as cri:
            for sandbox in cri.list_sandboxes():
                try:
                    cri.stop_sandbox(sandbox.id)
                    cri.remove_sandbox(sandbox.id)
                except CriError as e:
                    log.warning(
                        "leftover sandbox not removed", extra={"sandbox": sandbox.id, "error": str(e)}
                    )

    async def _on_pod(self, event: WatchEvent) -> None:
        meta = event.obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        worker = self.workers.get(uid)
        if worker is None:
            if event.type is EventType.DELETED:
                return
            worker = PodWorker(self, event.obj)
            self.workers[uid] = worker
        worker.update(None if event.type is EventType.DELETED else event.obj)

    async def _on_nad(self, event: WatchEvent) -> None:
        for worker in self.workers.values():
            if worker.waiting_for_networks:
                worker.kick()

    async def event(self, pod: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        await self.events.record({"apiVersion": "v1", "kind": "Pod", **pod}, kind, reason, message)

    async def service_account_token(self, pod: Mapping[str, Any]) -> str:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        sa = str(spec.get("serviceAccountName") or "default")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [],
                "expirationSeconds": 3607,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                },
            },
        }
        answer = await self.client.create_subresource(
            SERVICEACCOUNTS, sa, "token", request, str(meta.get("namespace"))
        )
        return str((answer.get("status") or {}).get("token") or "")


class PodWorker:
    """Drives one pod on this node from its latest object; one at a time, retried with backoff."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.env = kubelet.env
        meta = pod.get("metadata") or {}
        self.namespace, self.name, self.uid = (
            str(meta.get("namespace")),
            str(meta.get("name")),
            str(meta.get("uid")),
        )
        self.pod: dict[str, Any] | None = pod
        self.record = PodRecord(self.namespace, self.name, self.uid)
        self.processes: PodProcesses | None = None
        self.proxy: ApiProxy | None = None  # the API server on 127.0.0.1 inside the pod netns
        self.problem: tuple[str, str] | None = None
        self.reported_problem: tuple[str, str] | None = None
        self.waiting_for_networks = False
        self.started_at: str | None = None
        self.written: dict[str, Any] | None = None
        self.failures = 0
        self._kick = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: dict[str, Any] | None) -> None:
        self.pod = pod
        self.kick()

    def kick(self) -> None:
        self._kick.set()

    def _kick_from_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._kick.set)

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                if await self._sync():
                    self.kubelet.workers.pop(self.uid, None)
                    return
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - one pod's failure never stops the node
                self.failures += 1
                delay = RETRY_S[min(self.failures, len(RETRY_S)) - 1]
                log.warning(
                    "pod sync failed, retrying",
                    extra={"pod": f"{self.namespace}/{self.name}", "error": repr(e), "retry_s": delay},
                )
                self._loop.call_later(delay, self.kick)

    async def _sync(self) -> bool:
        pod = self.pod
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            await self._terminate(pod)
            return True
        if self.processes is None:
            await self._start(pod)
        await self._report(pod)
        return False

    async def _start(self, pod: dict[str, Any]) -> None:
        try:
            steps = plan_attachments(
                pod,
                {(n["metadata"]["namespace"], n["metadata"]["name"]): n for n in self.kubelet.nads.items()},
            )
        except AttachError as e:
            self.waiting_for_networks = True
            await self._problem(pod, e.reason, e.message)
            return
        self.waiting_for_networks = False
        self.started_at = self.started_at or now_timestamp()
        hostnet = bool((pod.get("spec") or {}).get("hostNetwork"))
        t0 = time.monotonic()
        try:
            if not hostnet and not self.record.sandbox_id:
                await asyncio.to_thread(podrun.run_sandbox, self.env, pod, self.record)
            t1 = time.monotonic()
            if steps and not self.record.attached:
                await asyncio.to_thread(podrun.attach, self.env, self.record, steps)
            t2 = time.monotonic()
            if not hostnet and self.proxy is None:
                self.proxy = await self._start_proxy()
        except PodSetupError as e:
            await self._problem(pod, e.reason, e.message, warn=True)
            raise
        if not hostnet:
            status = network_status(self.record.primary, self.record.network_status())
            await self.kubelet.client.patch(
                PODS,
                self.name,
                {"metadata": {"annotations": {NETWORK_STATUS: json.dumps(status, indent=4)}}},
                self.namespace,
            )
        sa_dir = self.env.layout.service_account_dir(self.env.node.name, self.namespace, self.name, self.uid)
        token = await self.kubelet.service_account_token(pod)
        await asyncio.to_thread(
            podrun.write_service_account, sa_dir, token, self.kubelet.ca_pem, self.namespace
        )
        pod_ips = self.env.host_ips if hostnet else self.record.pod_ips
        ctx = PodContext(
            host_ips=self.env.host_ips,
            pod_ips=pod_ips,
            host_path=lambda path: self.env.layout.host_path(self.env.node.name, path),
            empty_dir_root=podrun.pod_dir(self.env, self.namespace, self.name, self.uid) / "volumes",
            service_account_dir=sa_dir,
            extra_env=(
                ("PATH", CONTAINER_PATH),
                ("KUBERNETES_SERVICE_HOST", self.kubelet.api_host),
                ("KUBERNETES_SERVICE_PORT", str(self.kubelet.api_port)),
                ("KUBERNETES_SERVICE_PORT_HTTPS", str(self.kubelet.api_port)),
                ("HOSTNAME", self.name),
            ),
        )
        specs = pod_container_specs(pod, ctx)
        processes = PodProcesses(
            f"{self.namespace}/{self.name}",
            specs,
            netns=None if hostnet else self.record.netns,
            cgroup_parent=self.env.runtime.pod_cgroup(self.uid),
            log_dir=podrun.pod_dir(self.env, self.namespace, self.name, self.uid),
            restart_policy=_restart_policy(pod),
            on_change=self._kick_from_thread,
        )
        t3 = time.monotonic()
        try:
            await asyncio.to_thread(processes.start)
        except BaseException:
            # Not started: nothing is recorded as running, so the retry starts the containers again.
            await asyncio.to_thread(processes.stop, 0)
            raise
        self.processes = processes
        self.problem = None
        log.info(
            "pod started",
            extra={
                "pod": f"{self.namespace}/{self.name}",
                "sandbox_ms": round((t1 - t0) * 1000),
                "networks_ms": round((t2 - t1) * 1000),
                "api_ms": round((t3 - t2) * 1000),
                "processes_ms": round((time.monotonic() - t3) * 1000),
            },
        )

    async def _start_proxy(self) -> ApiProxy:
        proxy = ApiProxy(
            self.record.netns,
            self.kubelet.api_port,
            (self.kubelet.api_host, self.kubelet.api_port),
            f"{self.namespace}/{self.name}",
        )
        try:
            await proxy.start()
        except ApiProxyError as e:
            raise PodSetupError("FailedApiServerProxy", str(e)) from None
        return proxy

    async def _stop_proxy(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None

    async def _problem(self, pod: dict[str, Any], reason: str, message: str, *, warn: bool = True) -> None:
        self.problem = (reason, message)
        if self.reported_problem != self.problem:
            self.reported_problem = self.problem
            await self.kubelet.event(pod, "Warning" if warn else "Normal", reason, message)

    async def _report(self, pod: dict[str, Any]) -> None:
        hostnet = bool((pod.get("spec") or {}).get("hostNetwork"))
        if self.processes is not None:
            containers = tuple(s.to_raw() for s in await asyncio.to_thread(self.processes.statuses))
        elif self.problem is not None:
            containers = waiting_statuses(pod, *self.problem)
        else:
            containers = waiting_statuses(pod, "ContainerCreating", "")
        facts = PodFacts(
            host_ips=self.env.host_ips,
            pod_ips=self.env.host_ips if hostnet else self.record.pod_ips,
            sandbox_ready=self.processes is not None,
            start_time=self.started_at,
            containers=containers,
            problem=self.problem,
        )
        status = pod_status(pod, facts, now_timestamp(), self.written or pod.get("status"))
        if status == self.written:
            return
        try:
            await self.kubelet.client.patch_status(
                PODS, self.name, {"status": status}, self.namespace, type=PatchType.MERGE
            )
        except KubeNotFound:
            return
        self.written = status

    async def _terminate(self, pod: dict[str, Any] | None) -> None:
        grace = float((pod or {}).get("metadata", {}).get("deletionGracePeriodSeconds") or 0) if pod else 0.0
        processes = self.processes

        if processes is not None:
            await asyncio.to_thread(processes.stop, grace)
        # The API stays reachable during the grace period; its sockets hold the pod netns open, so
        # they go before the sandbox.
        await self._stop_proxy()
        errors = await asyncio.to_thread(podrun.teardown, self.env, self.record)
        if errors:
            raise RuntimeError("; ".join(errors))
        self.processes = None
        if pod is not None:
            with contextlib.suppress(KubeNotFound):
                await self.kubelet.client.delete(
                    PODS, self.name, self.namespace, grace_period_seconds=0, uid=self.uid
                )


def _restart_policy(pod: Mapping[str, Any]) -> RestartPolicy:
    policy = (pod.get("spec") or {}).get("restartPolicy")
    return "OnFailure" if policy == "OnFailure" else "Never" if policy == "Never" else "Always"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 443


def _kernel() -> str:
    return platform.release()


def ca_from_kubeconfig(text: str) -> str:
    """The PEM CA of the kubeconfig's current cluster (certificate-authority-data)."""
    config = yaml.safe_load(text)
    cluster = (config.get("clusters") or [{}])[0].get("cluster") or {}
    return base64.b64decode(cluster.get("certificate-authority-data") or "").decode()


__all__ = ["Kubelet", "PodWorker", "ca_from_kubeconfig"]
