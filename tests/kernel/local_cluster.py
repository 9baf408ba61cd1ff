"""A local cluster for end-to-end tests (imported as `local_cluster`): up, kubectl, waits, cleanup checks.

Each cluster lives in a fresh short state dir under /tmp, so its names (derived from the dir) are
unique per run and runs can overlap. `leftovers()` lists anything of it still on the machine: the
tests assert it is empty after `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnp.local.cluster import down, up
from mnp.local.layout import Layout
from mnp.local.nodes import leftovers
from mnp.local.nodes.cri import CriClient
from mnp.local.nodes.netns import list_netns

KUBECTL = str(Path(sys.executable).parent / "kubectl")
WAIT_S = 60.0


class LocalCluster:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    @property
    def kubeconfig(self) -> str:
        return str(self.layout.kubeconfig)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str = "", namespace: str = "default") -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        args += ["-A"] if namespace == "*" else ["-n", namespace]
        return dict(json.loads(self.kubectl(*args).stdout))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.get("pod", name, namespace)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    def wait_running(self, *names: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
        pods: dict[str, dict[str, Any]] = {}

        def running() -> bool:
            for name in names:
                p = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
                if p.returncode != 0:
                    return False
                pods[name] = json.loads(p.stdout)
                if (pods[name].get("status") or {}).get("phase") != "Running":
                    return False
            return True

        self.wait_for(f"pods {', '.join(names)} to run", running)
        return pods

    def wait_gone(self, kind: str, name: str, namespace: str = "default") -> None:
        self.wait_for(
            f"{kind} {namespace}/{name} to be gone",
            lambda: self.kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0,
        )

    def netns_of(self, pod: dict[str, Any]) -> str:
        """The pod's netns path, found as the agent will find it: CRI on its node, by pod uid."""
        node = pod["spec"]["nodeName"]
        with CriClient(str(self.layout.node_dir(node) / "containerd.sock")) as cri:
            path = cri.find_sandbox_netns(pod["metadata"]["uid"])
        assert path, f"no sandbox for pod {pod['metadata']['name']} on {node}"
        return path

    def run_in(
        self, pod: dict[str, Any], *argv: str, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net={self.netns_of(pod)}", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ping(self, pod: dict[str, Any], address: str) -> bool:
        return self.run_in(pod, "ping", "-c1", "-W2", address).returncode == 0

    def leftovers(self) -> list[str]:
        """Everything of this cluster still on the machine (empty after a clean `down`)."""
        prefix = self.layout.prefix
        root = str(self.layout.root)
        found = [f"netns {n}" for n in list_netns(prefix)]
        found += [f"mount {m}" for m in leftovers.mounts_under(self.layout.root)]
        for pid, args in leftovers.iter_processes():
            if pid != os.getpid() and any(root in a for a in args):
                found.append(f"process {pid} {' '.join(args)[:120]}")
        found += [f"cgroup {h / prefix}" for h in leftovers.cgroup_hierarchies() if (h / prefix).exists()]
        return found


@contextmanager
def local_cluster(nodes: int = 2) -> Iterator[LocalCluster]:
    """A cluster that is down and gone afterwards, whatever the test did; asserts nothing is left."""
    root = Path(tempfile.mkdtemp(prefix="mnp-", dir="/tmp"))
    layout = Layout.at(root)
    cluster = LocalCluster(layout)
    try:
        up(layout, nodes)
        yield cluster
    finally:
        down(layout)
        left = cluster.leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left behind by the cluster in {root}: {left}"
