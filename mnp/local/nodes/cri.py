"""A typed client for the pod sandbox part of a CRI v1 runtime (containerd here), over its unix socket.

The local nodes create one sandbox per pod exactly as the kubelet does (metadata name/namespace/uid,
the pod's labels plus the kubelet's io.kubernetes.pod.* labels, the pod's annotations), so that any CRI
client, the mnp agent included, finds a pod's sandbox and network namespace the way it would on a real
node: `find_sandbox_netns(pod_uid)`. gRPC errors are raised as CriError (SandboxNotFound for NOT_FOUND).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]

from mnp.api.errors import MnpError
from mnp.local.nodes import cri_pb2, cri_pb2_grpc

# The labels the kubelet puts on every sandbox (pkg/kubelet/types/labels.go); CRI clients select on them.
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"

DEFAULT_TIMEOUT_S = 30.0


class CriError(MnpError):
    """A CRI call failed; `code` is the gRPC status name (UNAVAILABLE, NOT_FOUND, ...)."""

    def __init__(self, what: str, code: str, details: str) -> None:
        self.what = what
        self.code = code
        self.details = details
        super().__init__(f"{what}: {code}: {details}")


class SandboxNotFound(CriError):
    """The runtime has no sandbox with that id."""


class SandboxState(StrEnum):
    READY = "SANDBOX_READY"
    NOTREADY = "SANDBOX_NOTREADY"


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    runtime_name: str
    runtime_version: str
    api_version: str


@dataclass(frozen=True, slots=True)
class Sandbox:
    """One entry of ListPodSandbox: the pod it belongs to, its state and labels."""

    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: int  # nanoseconds since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """PodSandboxStatus: state, primary IPs, and (from the verbose info) netns path and sandbox pid.

    `netns_path` is "" and `pid` 0 when the runtime does not report them (not verbose, or stopped).
    """

    id: str
    name: str
    namespace: str
    uid: str
    state: SandboxState
    ips: tuple[str, ...]
    netns_path: str
    pid: int
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class CriClient:
    """RuntimeService client on the unix socket at `socket_path`; a context manager that closes it."""

    def __init__(self, socket_path: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._channel: Any = grpc.insecure_channel(f"unix://{socket_path}")
        # The generated stub is untyped; every response is converted to typed values below.
        self._stub: Any = cri_pb2_grpc.RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def version(self) -> RuntimeVersion:
        resp = self._call("Version", "version", cri_pb2.VersionRequest(version="v1"))
        return RuntimeVersion(
            str(resp.runtime_name), str(resp.runtime_version), str(resp.runtime_api_version)
        )

    def run_sandbox(
        self,
        name: str,
        namespace: str,
        uid: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        cgroup_parent: str,
        *,
        attempt: int = 0,
        hostname: str = "",
        sysctls: Mapping[str, str] | None = None,
        log_directory: str = "",
    ) -> str:
        """RunPodSandbox for pod namespace/name with uid; returns the sandbox id once it is ready.

        Labels are the pod's plus the kubelet's io.kubernetes.pod.* labels; `hostname` defaults to
        the pod name. `sysctls` (net.* ones) apply inside the sandbox's network namespace once the
        sandbox starts: after the primary network's CNI ADD (so not to eth0's DAD), before any
        secondary network is attached.
        """
        all_labels = {**labels, LABEL_POD_NAME: name, LABEL_POD_NAMESPACE: namespace, LABEL_POD_UID: uid}
        config = cri_pb2.PodSandboxConfig(
            metadata=cri_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=hostname or name,
            log_directory=log_directory,
            labels=all_labels,
            annotations=dict(annotations),
            linux=cri_pb2.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, sysctls=dict(sysctls or {})),
        )
        what = f"run sandbox {namespace}/{name}"
        resp = self._call("RunPodSandbox", what, cri_pb2.RunPodSandboxRequest(config=config))
        return str(resp.pod_sandbox_id)

    def sandbox_status(self, sandbox_id: str, *, verbose: bool = True) -> SandboxStatus:
        """PodSandboxStatus; raises SandboxNotFound if the runtime does not know the id."""
        req = cri_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        resp = self._call("PodSandboxStatus", f"sandbox status {sandbox_id}", req)
        s = resp.status
        netns, pid = _netns_and_pid(dict(resp.info))
        ips = tuple(str(ip) for ip in [s.network.ip, *(a.ip for a in s.network.additional_ips)] if ip)
        return SandboxStatus(
            id=str(s.id),
            name=str(s.metadata.name),
            namespace=str(s.metadata.namespace),
            uid=str(s.metadata.uid),
            state=_state(s.state),
            ips=ips,
            netns_path=netns,
            pid=pid,
            labels=dict(s.labels),
            annotations=dict(s.annotations),
        )

    def list_sandboxes(
        self, labels: Mapping[str, str] | None = None, state: SandboxState | None = None
    ) -> list[Sandbox]:
        """ListPodSandbox filtered by all of `labels` (match-labels) and by `state`, oldest first."""
        filt = cri_pb2.PodSandboxFilter(label_selector=dict(labels or {}))
        if state is not None:
            filt.state.CopyFrom(cri_pb2.PodSandboxStateValue(state=_proto_state(state)))
        resp = self._call("ListPodSandbox", "list sandboxes", cri_pb2.ListPodSandboxRequest(filter=filt))
        items = [
            Sandbox(
                id=str(i.id),
                name=str(i.metadata.name),
                namespace=str(i.metadata.namespace),
                uid=str(i.metadata.uid),
                attempt=int(i.metadata.attempt),
                state=_state(i.state),
                created_at=int(i.created_at),
                labels=dict(i.labels),
                annotations=dict(i.annotations),
            )
            for i in resp.items
        ]
        return sorted(items, key=lambda s: (s.created_at, s.id))

    def stop_sandbox(self, sandbox_id: str) -> None:
        """StopPodSandbox: kills its processes and tears down its network; idempotent."""
        req = cri_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._call("StopPodSandbox", f"stop sandbox {sandbox_id}", req)

    def remove_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox; idempotent (removing an unknown id is not an error)."""
        req = cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._call("RemovePodSandbox", f"remove sandbox {sandbox_id}", req)

    def find_sandbox(self, pod_uid: str) -> SandboxStatus | None:
        """The newest ready sandbox of the pod with uid `pod_uid`, with its netns path; None if none.

        Selects on the kubelet's pod uid label, and also accepts sandboxes made without it whose
        metadata carries the uid (other CRI clients), as the uid is what identifies a pod.
        """
        mine = self.list_sandboxes({LABEL_POD_UID: pod_uid}, SandboxState.READY)
        if not mine:
            mine = [s for s in self.list_sandboxes(state=SandboxState.READY) if s.uid == pod_uid]
        for sandbox in reversed(mine):
            try:
                status = self.sandbox_status(sandbox.id, verbose=True)
            except SandboxNotFound:  # removed between the list and the status call
                continue
            if status.state is SandboxState.READY and status.netns_path:
                return status
        return None

    def find_sandbox_netns(self, pod_uid: str) -> str | None:
        """The network namespace path of the pod with uid `pod_uid` (its ready sandbox), or None."""
        status = self.find_sandbox(pod_uid)
        return status.netns_path if status is not None else None

    def _call(self, method: str, what: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            name = code.name if code is not None else "UNKNOWN"
            details = e.details() or ""
            cls = SandboxNotFound if name == "NOT_FOUND" else CriError
            raise cls(f"{what} via {self.socket_path}", name, details) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _state(value: int) -> SandboxState:
    return SandboxState.READY if value == cri_pb2.SANDBOX_READY else SandboxState.NOTREADY


def _proto_state(state: SandboxState) -> cri_pb2.PodSandboxState:
    return cri_pb2.SANDBOX_READY if state is SandboxState.READY else cri_pb2.SANDBOX_NOTREADY


def _netns_and_pid(info: Mapping[str, str]) -> tuple[str, int]:
    """Netns path and pid from containerd's verbose info.

    containerd 1.6 has no top-level netns key: the path is the network entry of runtimeSpec. Falls
    back to /proc/<pid>/ns/net when only the pid is known; "" once the runtime closed the netns.
    """
    try:
        parsed = json.loads(info.get("info", "{}"))
    except json.JSONDecodeError:
        return "", 0
    if not isinstance(parsed, dict):
        return "", 0
    pid = parsed.get("pid")
    pid = pid if isinstance(pid, int) and pid > 0 else 0
    if parsed.get("netNamespaceClosed") is True:  # stopped: the path in the spec no longer exists
        return "", pid
    namespaces = ((parsed.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces") or []
    path = next((str(n.get("path") or "") for n in namespaces if n.get("type") == "network"), "")
    if not path and pid:
        path = f"/proc/{pid}/ns/net"
    return path, pid


__all__ = [
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "CriClient",
    "CriError",
    "RuntimeVersion",
    "Sandbox",
    "SandboxNotFound",
    "SandboxState",
    "SandboxStatus",
]
