"""What one pod holds on a node, set up and torn down (blocking I/O: CRI, CNI, files).

Set-up order is the kubelet's and Multus's: sandbox through CRI (its primary network comes from
containerd's own CNI config), the pod sysctls, then each secondary network by running the NAD's CNI
plugin in the node netns, then the service-account files, then the container processes. A record of
what was made (pod.json in the pod dir) is written before and after each step, so a node process
that restarts, or `mnp local down` after a crash, can undo exactly that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnp.local.kubelet.attach import AttachStep
from mnp.local.layout import ClusterConfig, Layout, NodeConfig
from mnp.local.nodes import leftovers
from mnp.local.nodes.cni import CniError, cni_add, cni_del, network_status_entry
from mnp.local.nodes.containerd_config import PRIMARY_NETWORK, NodeRuntime
from mnp.local.nodes.cri import CriClient, CriError
from mnp.local.nodes.netns import POD_SYSCTLS, run_in_netns

log = logging.getLogger(__name__)
RECORD = "pod.json"


@dataclass(frozen=True, slots=True)
class NodeEnv:
    """The node a kubelet runs: where its files are and how to reach its runtime."""

    layout: Layout
    cluster: ClusterConfig
    node: NodeConfig
    runtime: NodeRuntime

    @property
    def host_ips(self) -> tuple[str, ...]:
        return tuple(a.split("/")[0] for a in self.node.addresses)

    def cri(self, timeout: float = 30.0) -> CriClient:
        return CriClient(str(self.runtime.socket), timeout=timeout)


@dataclass(slots=True)
class PodRecord:
    """What was made for one pod; persisted as JSON in its pod dir."""

    namespace: str
    name: str
    uid: str
    sandbox_id: str = ""
    netns: str = ""
    pod_ips: tuple[str, ...] = ()
    primary: dict[str, Any] | None = None  # network-status entry of eth0
    attached: list[dict[str, Any]] = field(default_factory=list)  # AttachStep.to_raw() + "result"

    def to_json(self) -> str:
        return json.dumps(
            {
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
                "sandboxId": self.sandbox_id,
                "netns": self.netns,
                "podIPs": list(self.pod_ips),
                "primary": self.primary,
                "attached": self.attached,
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> PodRecord:
        raw = json.loads(text)
        return PodRecord(
            raw["namespace"],
            raw["name"],
            raw["uid"],
            raw.get("sandboxId", ""),
            raw.get("netns", ""),
            tuple(raw.get("podIPs") or ()),
            raw.get("primary"),
            list(raw.get("attached") or []),
        )

    def network_status(self) -> list[dict[str, Any]]:
        """The secondary entries of the network-status annotation, in attachment order."""
        return [network_status_entry(a["network"], a["result"], a["ifname"]) for a in self.attached]


class PodSetupError(Exception):
    """A step of setting a pod up failed; `reason` is for the pod's condition and Event."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def pod_dir(env: NodeEnv, namespace: str, name: str, uid: str) -> Path:
    return env.layout.pod_dir(env.node.name, namespace, name, uid)


def save(env: NodeEnv, record: PodRecord) -> None:
    d = pod_dir(env, record.namespace, record.name, record.uid)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (RECORD + ".tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, d / RECORD)


def records(env: NodeEnv) -> list[tuple[Path, PodRecord | None]]:
    """Every pod dir on this node with its record (None when unreadable or missing)."""
    root = env.layout.node_dir(env.node.name) / "pods"
    out: list[tuple[Path, PodRecord | None]] = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            out.append((d, PodRecord.from_json((d / RECORD).read_text())))
        except (OSError, ValueError, KeyError):
            out.append((d, None))
    return out


def run_sandbox(env: NodeEnv, pod: Mapping[str, Any], record: PodRecord) -> None:
    """RunPodSandbox with the pod's name, namespace, uid and labels; fills sandbox id, netns, IPs."""
    meta = pod.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    with env.cri() as cri:
        try:
            sandbox_id = cri.run_sandbox(
                record.name,
                record.namespace,
                record.uid,
                labels,
                {},
                env.runtime.pod_cgroup(record.uid),
                sysctls=POD_SYSCTLS,
            )
            record.sandbox_id = sandbox_id
            save(env, record)
            status = cri.sandbox_status(sandbox_id)
        except CriError as e:
            raise PodSetupError("FailedCreatePodSandBox", str(e)) from None
    record.netns = status.netns_path
    record.pod_ips = tuple(sorted(status.ips, key=lambda ip: ":" in ip))
    record.primary = {
        "name": PRIMARY_NETWORK,
        "interface": "eth0",
        "ips": list(record.pod_ips),
        "mac": _mac(status.netns_path, "eth0"),
    }
    save(env, record)


def attach(env: NodeEnv, record: PodRecord, steps: tuple[AttachStep, ...]) -> None:
    """CNI ADD of each secondary network, recorded one by one; on failure the added ones are deleted."""
    for step in steps:
        try:
            result = cni_add(
                step.config,
                netns=record.netns,
                ifname=step.ifname,
                container_id=record.sandbox_id,
                pod_namespace=record.namespace,
                pod_name=record.name,
                node_netns=env.node.netns,
                runtime_config=step.runtime_config,
            )
        except CniError as e:
            detach(env, record)
            raise PodSetupError(
                "FailedAttachNetwork", f"network {step.network} on {step.ifname}: {e}"
            ) from None
        record.attached.append({**step.to_raw(), "result": result})
        save(env, record)


def detach(env: NodeEnv, record: PodRecord) -> list[str]:
    """CNI DEL of every recorded attachment, last first; returns the errors (DEL goes on regardless)."""
    errors: list[str] = []
    while record.attached:
        a = record.attached[-1]
        step = AttachStep.from_raw(a)
        try:
            cni_del(
                step.config,
                netns=record.netns or "/nonexistent",
                ifname=step.ifname,
                container_id=record.sandbox_id,
                pod_namespace=record.namespace,
                pod_name=record.name,
                node_netns=env.node.netns,
                runtime_config=step.runtime_config,
                prev_result=a.get("result"),
            )
        except CniError as e:
            errors.append(str(e))
        record.attached.pop()
        save(env, record)
    return errors


def remove_sandbox(env: NodeEnv, record: PodRecord) -> list[str]:
    """Stop and remove the pod's sandbox (its primary network goes with it); returns errors."""
    if not record.sandbox_id:
        return []
    errors: list[str] = []
    with env.cri() as cri:
        for step in (cri.stop_sandbox, cri.remove_sandbox):
            try:
                step(record.sandbox_id)
            except CriError as e:
                errors.append(str(e))
    if not errors:
        record.sandbox_id, record.netns = "", ""
        save(env, record)
    return errors


def write_service_account(directory: Path, token: str, ca_pem: str, namespace: str) -> None:
    """token, ca.crt and namespace, as the projected kube-api-access volume holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("token", token), ("ca.crt", ca_pem), ("namespace", namespace)):
        tmp = directory / f".{name}.tmp"
        tmp.write_text(content)
        tmp.chmod(0o644)
        os.replace(tmp, directory / name)


def remove_pod_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def teardown(env: NodeEnv, record: PodRecord, stop_processes: Callable[[], None] | None = None) -> list[str]:
    """Processes, then secondary networks, then the sandbox, then the pod dir; returns what failed."""
    if stop_processes is not None:
        stop_processes()
    errors = detach(env, record)
    errors += remove_sandbox(env, record)
    if not errors:
        # The pod's cgroup is the kubelet's to remove, as on a real node: runc removes only its own.
        try:
            leftovers.remove_cgroups(env.runtime.pod_cgroup(record.uid))
        except leftovers.LeftoverError as e:
            errors.append(str(e))
            return errors
        remove_pod_dir(pod_dir(env, record.namespace, record.name, record.uid))
    return errors


def _mac(netns: str, ifname: str) -> str:
    """The MAC of `ifname` in `netns`; "" if it cannot be read (it is informational in the status)."""
    proc = run_in_netns(netns, ["ip", "-j", "link", "show", "dev", ifname], capture_output=True, text=True)
    try:
        return str(json.loads(proc.stdout)[0]["address"]) if proc.returncode == 0 else ""
    except (ValueError, LookupError, TypeError):
        return ""


__all__ = [
    "NodeEnv",
    "PodRecord",
    "PodSetupError",
    "attach",
    "detach",
    "records",
    "remove_sandbox",
    "run_sandbox",
    "save",
    "teardown",
    "write_service_account",
]
