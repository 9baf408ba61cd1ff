"""Where a local cluster keeps everything: one state dir, DIR, and names derived from it alone.

Every component (API server, node processes, controllers, CLI) finds its files through `Layout`, so
`mnp local down` and crash recovery can find and remove all of it from DIR alone, and two clusters
with different DIRs never share a name (netns, cgroup, containerd socket).

    DIR/cluster.json                 the cluster's shape (ClusterConfig), written by `up`
    DIR/api/                         the API server's --dir (state.db, kubeconfig, TLS)
    DIR/pids/<component>.pid         one per long-running process (apiserver, controllers, node-N)
    DIR/logs/<component>.log         their logs
    DIR/n/<node>/                    the node's containerd state dir (NodeRuntime.state_dir)
    DIR/n/<node>/pods/<ns>_<name>_<uid>/
        serviceaccount/              token, ca.crt, namespace (mounted at SERVICE_ACCOUNT_DIR)
        <container>/<restart>.log    container output, like /var/log/pods on a real node
    DIR/n/<node>/hostpath/<path>     where a hostPath volume of a pod on that node resolves
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mnp.api.errors import MnpError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONTAINERD_SOCKET_PATHS = ("/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock")
CONTAINERD_DIRS = ("/run/containerd", "/var/run/containerd")
# hostPath volumes that mean "the machine itself": the same on every node, resolved to themselves.
PASSTHROUGH_PATHS = ("/", "/proc", "/sys", "/dev", "/lib/modules", "/usr", "/etc", "/tmp")
# sun_path holds 108 bytes; containerd also binds "<socket>.ttrpc" next to its socket.
_SOCKET_BUDGET = 100


class LayoutError(MnpError):
    """The state dir cannot hold a cluster (path too long, not a directory, cluster.json unreadable)."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node: its name, netns, uplink addresses, pod CIDRs (this node's share) and cgroup root."""

    name: str
    netns: str
    addresses: tuple[str, ...]  # eth0, with prefix length: ("198.18.0.1/24", "fd00:18::1/64")
    pod_cidrs: tuple[str, ...]
    cgroup_root: str


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The shape of a cluster as `up` created it; everything else derives from this and DIR."""

    prefix: str  # netns / link / cgroup name prefix, unique per DIR
    fabric_netns: str
    cluster_cidrs: tuple[str, ...]
    nodes: tuple[NodeConfig, ...]

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LayoutError(
            f"no node {name!r} in this cluster (nodes: {', '.join(n.name for n in self.nodes)})"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> ClusterConfig:
        raw = json.loads(text)
        nodes = tuple(
            NodeConfig(
                name=n["name"],
                netns=n["netns"],
                addresses=tuple(n["addresses"]),
                pod_cidrs=tuple(n["pod_cidrs"]),
                cgroup_root=n["cgroup_root"],
            )
            for n in raw["nodes"]
        )
        return ClusterConfig(
            prefix=raw["prefix"],
            fabric_netns=raw["fabric_netns"],
            cluster_cidrs=tuple(raw["cluster_cidrs"]),
            nodes=nodes,
        )


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths and names of the cluster whose state dir is `root` (absolute)."""

    root: Path

    @staticmethod
    def at(directory: str | Path) -> Layout:
        root = Path(directory).absolute()
        layout = Layout(root)
        longest = layout.node_dir("node-99") / "containerd.sock.ttrpc"
        if len(str(longest)) > _SOCKET_BUDGET:
            raise LayoutError(
                f"state dir {root} is too long ({len(str(root))} chars): containerd's socket path under it "
                f"would exceed the kernel's limit for unix sockets; use a shorter --dir such as /tmp/mnp-1"
            )
        return layout

    @property
    def prefix(self) -> str:
        """A short name prefix unique to this state dir, safe for netns, link and cgroup names."""
        return "mnp" + hashlib.sha256(str(self.root).encode()).hexdigest()[:6]

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def api_dir(self) -> Path:
        return self.root / "api"

    @property
    def kubeconfig(self) -> Path:
        return self.api_dir / "kubeconfig"

    def pid_file(self, component: str) -> Path:
        return self.root / "pids" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def node_dir(self, node: str) -> Path:
        return self.root / "n" / node

    def pod_dir(self, node: str, namespace: str, name: str, uid: str) -> Path:
        return self.node_dir(node) / "pods" / f"{namespace}_{name}_{uid}"

    def service_account_dir(self, node: str, namespace: str, name: str, uid: str) -> Path:
        return self.pod_dir(node, namespace, name, uid) / "serviceaccount"

    def container_log(
        self, node: str, namespace: str, name: str, uid: str, container: str, restart: int
    ) -> Path:
        return self.pod_dir(node, namespace, name, uid) / container / f"{restart}.log"

    def host_path(self, node: str, path: str) -> Path:
        """Where hostPath `path` of a pod on `node` lives on this machine.

        The node's containerd socket (and its directory) stand in for /run/containerd; paths that are
        the machine itself (/proc, /sys, /, ...) are themselves; anything else is node-local under
        DIR/n/<node>/hostpath, so two nodes never share a hostPath directory.
        """
        clean = "/" + "/".join(p for p in path.split("/") if p and p != ".")
        if ".." in clean.split("/"):
            raise LayoutError(f"hostPath {path!r} must not contain '..'")
        if clean in CONTAINERD_SOCKET_PATHS:
            return self.node_dir(node) / "containerd.sock"
        if clean in CONTAINERD_DIRS:
            return self.node_dir(node)
        if clean in PASSTHROUGH_PATHS:
            return Path(clean)
        return self.node_dir(node) / "hostpath" / clean.lstrip("/")

    def read_cluster(self) -> ClusterConfig:
        try:
            return ClusterConfig.from_json(self.cluster_file.read_text())
        except FileNotFoundError:
            raise LayoutError(
                f"no cluster in {self.root}: run `mnp local up --dir {self.root}` first"
            ) from None
        except (ValueError, KeyError, TypeError) as e:
            raise LayoutError(
                f"{self.cluster_file} is unreadable ({e}); `mnp local down` removes it"
            ) from None


__all__ = [
    "CONTAINERD_SOCKET_PATHS",
    "SERVICE_ACCOUNT_DIR",
    "ClusterConfig",
    "Layout",
    "LayoutError",
    "NodeConfig",
]
