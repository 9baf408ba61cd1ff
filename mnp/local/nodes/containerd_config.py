"""The configuration of a local node's containerd: where everything lives, config.toml, primary network.

Pure data and rendering plus writing the files, so the same NodeRuntime can be rebuilt from the state
dir alone (crash recovery) and checked without a kernel. containerd.py runs the daemon.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnp.api.errors import MnpError

CNI_BIN_DIR = "/usr/lib/cni"
PRIMARY_NETWORK = "mnp-primary"
SETTINGS_FILE = "node.json"
# sun_path holds 108 bytes; containerd also binds "<socket>.ttrpc".
_MAX_SOCKET_PATH = 100


class ContainerdError(MnpError):
    """containerd could not be configured, started, reached or stopped; names the node."""


@dataclass(frozen=True, slots=True)
class NodeRuntime:
    """The settings of one node's containerd; every path it uses derives from `state_dir`.

    Pod addresses come from `pod_cidrs` (this node's share, like Node.spec.podCIDRs) inside the
    matching `cluster_cidrs` (all nodes'), so pods on different nodes share one subnet on the fabric
    and reach each other directly. Pod cgroups go under `cgroup_root` in every hierarchy.
    """

    node: str
    netns: str
    state_dir: Path
    pod_cidrs: tuple[str, ...]
    cluster_cidrs: tuple[str, ...]
    cgroup_root: str

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd.sock"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.toml"

    @property
    def root(self) -> Path:
        return self.state_dir / "root"

    @property
    def state(self) -> Path:
        return self.state_dir / "state"

    @property
    def runc_root(self) -> Path:
        return self.state_dir / "state" / "runc"

    @property
    def netns_dir(self) -> Path:
        """Where the CRI plugin bind-mounts pod netns files (netns_mounts_under_state_dir)."""
        return self.state_dir / "state" / "io.containerd.grpc.v1.cri" / "netns"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni"

    @property
    def ipam_dir(self) -> Path:
        return self.state_dir / "ipam"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "containerd.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "containerd.pid"

    def pod_cgroup(self, pod_uid: str) -> str:
        """The cgroup parent for a pod's sandbox, as the kubelet's cgroupfs driver names it."""
        return f"{self.cgroup_root}/pod{pod_uid}"


def primary_network(rt: NodeRuntime) -> dict[str, Any]:
    """The CRI plugin's primary network: macvlan bridge on the node's eth0, host-local IPAM.

    host-local keeps its state under the state dir (never /var/lib/cni/networks) and hands out this
    node's range only; the gateway field (first address of the node's range) is informational.
    """
    if len(rt.pod_cidrs) != len(rt.cluster_cidrs) or not rt.pod_cidrs:
        raise ContainerdError(f"node {rt.node}: pod_cidrs and cluster_cidrs must pair up")
    ranges = []
    for pod, cluster in zip(rt.pod_cidrs, rt.cluster_cidrs, strict=True):
        pod_net, cluster_net = ipaddress.ip_network(pod), ipaddress.ip_network(cluster)
        if pod_net.version != cluster_net.version or not pod_net.subnet_of(cluster_net):  # type: ignore[arg-type]
            raise ContainerdError(f"node {rt.node}: pod CIDR {pod} is not inside cluster CIDR {cluster}")
        last = pod_net.broadcast_address - 1 if pod_net.version == 4 else pod_net.broadcast_address
        ranges.append(
            [
                {
                    "subnet": str(cluster_net),
                    "rangeStart": str(pod_net.network_address + 2),
                    "rangeEnd": str(last),
                    "gateway": str(pod_net.network_address + 1),
                }
            ]
        )
    return {
        "cniVersion": "0.4.0",
        "name": PRIMARY_NETWORK,
        "plugins": [
            {
                "type": "macvlan",
                "mode": "bridge",
                "master": "eth0",
                "ipam": {"type": "host-local", "dataDir": str(rt.ipam_dir), "ranges": ranges},
            }
        ],
    }


def render_config(rt: NodeRuntime, sandbox_image: str) -> str:
    """containerd 1.6 config.toml (version 2) for the node: everything of its own under the state dir."""

    def q(value: str | Path) -> str:
        return json.dumps(str(value))  # a TOML basic string for any path we make

    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    disabled = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]
    lines = [
        "version = 2",
        f"root = {q(rt.root)}",
        f"state = {q(rt.state)}",
        f"disabled_plugins = [{', '.join(q(p) for p in disabled)}]",
        "[grpc]",
        f"  address = {q(rt.socket)}",
        "[ttrpc]",
        f"  address = {q(str(rt.socket) + '.ttrpc')}",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {q(rt.state_dir / 'opt')}",
        cri,
        f"  sandbox_image = {q(sandbox_image)}",
        # Pod netns files under the state dir, not /var/run/netns: each node keeps its own.
        "  netns_mounts_under_state_dir = true",
        # Without CAP_SYS_RESOURCE runc cannot set the sandbox's oom_score_adj of -998 and fails with
        # "can't get final child's PID from pipe: EOF"; this caps it at containerd's own value.
        "  restrict_oom_score_adj = true",
        cri[:-1] + ".containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        runc,
        '  runtime_type = "io.containerd.runc.v2"',
        runc[:-1] + ".options]",
        "  SystemdCgroup = false",  # cgroupfs: there is no systemd here
        f"  Root = {q(rt.runc_root)}",  # else /run/containerd/runc/k8s.io, shared by every instance
        cri[:-1] + ".cni]",
        f"  bin_dir = {q(CNI_BIN_DIR)}",
        f"  conf_dir = {q(rt.cni_conf_dir)}",
        "  max_conf_num = 1",
    ]
    return "\n".join(lines) + "\n"


def write_config(rt: NodeRuntime, sandbox_image: str) -> None:
    """Create the state dir and write config.toml, the primary conflist and the settings file."""
    if len(str(rt.socket)) > _MAX_SOCKET_PATH:
        raise ContainerdError(f"node {rt.node}: socket path {rt.socket} is too long for a unix socket")
    for d in (rt.state_dir, rt.cni_conf_dir, rt.ipam_dir):
        d.mkdir(parents=True, exist_ok=True)
    rt.config_path.write_text(render_config(rt, sandbox_image))
    conflist = rt.cni_conf_dir / f"10-{PRIMARY_NETWORK}.conflist"
    conflist.write_text(json.dumps(primary_network(rt), indent=2) + "\n")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(rt).items()}
    (rt.state_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def load_settings(state_dir: Path) -> NodeRuntime | None:
    """The NodeRuntime written by `write_config` into `state_dir`, or None if there is none."""
    try:
        raw = json.loads((state_dir / SETTINGS_FILE).read_text())
        return NodeRuntime(
            node=str(raw["node"]),
            netns=str(raw["netns"]),
            state_dir=Path(raw["state_dir"]),
            pod_cidrs=tuple(raw["pod_cidrs"]),
            cluster_cidrs=tuple(raw["cluster_cidrs"]),
            cgroup_root=str(raw["cgroup_root"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = [
    "CNI_BIN_DIR",
    "PRIMARY_NETWORK",
    "SETTINGS_FILE",
    "ContainerdError",
    "NodeRuntime",
    "load_settings",
    "primary_network",
    "render_config",
    "write_config",
]
