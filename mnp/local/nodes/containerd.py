"""One real containerd per local node, run inside the node's network namespace, and its teardown.

Each node's containerd has its own root, state, sockets, runc root, CNI config and IPAM data under one
state dir, and is started with `nsenter --net=<node netns>`, so the CRI plugin's primary network
(macvlan on the node's eth0, host-local IPAM) is wired on the node and never in the root namespace.
Teardown goes through CRI first (sandboxes stopped and removed: CNI DEL, netns, cgroups), then stops
the daemon, then removes what containerd 1.6 leaves outside its dirs. `cleanup_leftovers(state_dir)`
does the same from the state dir alone after a crash or kill -9 of anything.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from mnp.local.nodes import leftovers
from mnp.local.nodes.containerd_config import ContainerdError, NodeRuntime, load_settings, write_config
from mnp.local.nodes.cri import CriClient, CriError
from mnp.local.nodes.image import OciImage
from mnp.local.nodes.netns import resolve_netns

log = logging.getLogger(__name__)

CRI_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin keeps its sandboxes in
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Containerd:
    """A node's containerd process; `start()` runs it in the node netns, `stop()` leaves nothing.

    `shutdown()` only ends the daemon (its sandboxes keep running under their shims, as on a real
    node when containerd restarts); `start()` again picks them up.
    """

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def client(self, timeout: float = 30.0) -> CriClient:
        return CriClient(str(self.rt.socket), timeout=timeout)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the daemon in the node netns and wait until its CRI service answers."""
        if self.pid is not None:
            raise ContainerdError(f"node {self.rt.node}: containerd already running (pid {self.pid})")
        if not self.rt.config_path.exists():
            raise ContainerdError(f"node {self.rt.node}: no {self.rt.config_path}; call write_config first")
        stale = leftovers.processes_with_args("containerd", ["--config", str(self.rt.config_path)])
        if stale:  # a second daemon would wait on the first one's metadata lock and never serve
            raise ContainerdError(
                f"node {self.rt.node}: containerd pid {stale[0]} already runs on {self.rt.state_dir}; "
                "stop it or call cleanup_leftovers"
            )
        netns = resolve_netns(self.rt.netns)
        if not os.path.exists(netns):
            raise ContainerdError(f"node {self.rt.node}: netns {netns} does not exist")
        self.rt.socket.unlink(missing_ok=True)  # a stale socket would look ready
        share_netns_dir(self.rt)
        started = time.monotonic()
        with open(self.rt.log_path, "ab") as out:
            # nsenter (not `ip netns exec`, which remounts /sys and hides the cgroup mounts from runc)
            # execs containerd in place, so the pid is containerd's. Its own session: it outlives us.
            self._proc = subprocess.Popen(
                ["nsenter", f"--net={netns}", "--", "containerd", "--config", str(self.rt.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": _PATH, "HOME": "/root"},
                start_new_session=True,
            )
        self.rt.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(started + timeout)
        except BaseException:
            self._terminate(kill=True)
            raise
        log.info(
            "containerd started",
            extra={"node": self.rt.node, "pid": self._proc.pid, "elapsed_ms": _ms(started)},
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        with self.client(timeout=2.0) as cri:
            while True:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    raise ContainerdError(
                        f"node {self.rt.node}: containerd exited with {code}: {self._log_tail()}"
                    )
                if self.rt.socket.exists():
                    try:
                        cri.version()
                        return
                    except CriError:
                        pass
                if time.monotonic() > deadline:
                    raise ContainerdError(f"node {self.rt.node}: CRI not ready in time: {self._log_tail()}")
                time.sleep(0.01)

    def import_image(self, image: OciImage) -> None:
        """`ctr images import` of an OCI layout tar into the CRI namespace (unpacked for overlayfs)."""
        argv = ["ctr", "-a", str(self.rt.socket), "-n", CRI_NAMESPACE, "images", "import", str(image.path)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise ContainerdError(f"node {self.rt.node}: import {image.ref}: {proc.stderr.strip()}")

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the daemon (SIGKILL after `timeout`) and reap it; sandboxes are left running."""
        self._terminate(kill=False, timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[str]:
        """Stop and remove every sandbox through CRI, end the daemon, sweep with cleanup_leftovers.

        Returns what the sweep removed: after a clean CRI teardown only the pod cgroup dirs (runc
        removes a sandbox's own cgroup, never the parents it was given). A sandbox CRI cannot
        remove is logged and then removed by force.
        """
        if self.pid is not None:
            with self.client(timeout=timeout) as cri:
                try:
                    remove_all_sandboxes(cri)
                except CriError as e:
                    log.warning(
                        "sandbox teardown through CRI failed", extra={"node": self.rt.node, "error": str(e)}
                    )
        self._terminate(kill=False, timeout=timeout)
        return cleanup_leftovers(self.rt.state_dir)

    def _terminate(self, *, kill: bool, timeout: float = STOP_TIMEOUT_S) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        self.rt.pid_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.rt.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def __enter__(self) -> Containerd:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def share_netns_dir(rt: NodeRuntime) -> None:
    """Make the pod netns dir a shared mount (a bind of itself), like `ip netns` does for /run/netns.

    A process in its own mount namespace (a container with hostPath volumes) sees netns files mounted
    after it started only if they propagate: into a namespace with slave propagation, from a shared
    mount. Without this the path is an empty file there and setns fails with EINVAL.
    """
    path = rt.netns_dir
    path.mkdir(parents=True, exist_ok=True)
    if str(path) in leftovers.mounts_under(path):
        return
    for argv in (["mount", "--bind", str(path), str(path)], ["mount", "--make-shared", str(path)]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ContainerdError(f"node {rt.node}: {' '.join(argv)}: {proc.stderr.strip()}")


def start_node_runtime(rt: NodeRuntime, image: OciImage) -> Containerd:
    """write_config + start + import the sandbox image; stops again if any step fails."""
    write_config(rt, image.ref)
    ctrd = Containerd(rt)
    ctrd.start()
    try:
        ctrd.import_image(image)
    except BaseException:
        ctrd.stop()
        raise
    return ctrd


def remove_all_sandboxes(cri: CriClient, parallel: int = 8) -> list[str]:
    """StopPodSandbox + RemovePodSandbox for every sandbox the runtime knows; returns their ids.

    Up to `parallel` sandboxes at a time (each stop is a CNI DEL and a kill, ~0.1 s). A sandbox that
    fails does not keep the others alive: all are tried, then the first error is raised.
    """
    ids = [s.id for s in cri.list_sandboxes()]

    def remove(sandbox_id: str) -> CriError | None:
        try:
            cri.stop_sandbox(sandbox_id)
            cri.remove_sandbox(sandbox_id)
        except CriError as e:
            return e
        return None

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="cri-teardown") as pool:
        errors = [e for e in pool.map(remove, ids) if e is not None]
    if errors:
        raise errors[0]
    return ids


def cleanup_leftovers(state_dir: Path) -> list[str]:
    """Remove everything a node's containerd and its sandboxes may have left, from the state dir alone.

    For crash recovery (kill -9 of containerd, of its caller, or both): a daemon still answering is
    asked to remove its sandboxes through CRI first; then daemon, shims and sandbox processes are
    killed, mounts under the state dir detached, pod cgroups, shim sockets and libcni result files of
    its sandboxes removed, and its runtime dirs (root, state, IPAM data) emptied. Returns what it had
    to remove, one line each; idempotent. Raises LeftoverError if something could not be removed.
    """
    state_dir = state_dir.resolve()
    rt = load_settings(state_dir)
    socket = state_dir / "containerd.sock"
    removed: list[str] = []
    daemons = leftovers.processes_with_args("containerd", ["--config", str(state_dir / "config.toml")])
    if daemons and socket.exists():
        with CriClient(str(socket), timeout=5.0) as cri:
            try:
                removed += [f"sandbox {i} (through CRI)" for i in remove_all_sandboxes(cri)]
            except CriError as e:  # the forced path below still removes them
                log.warning(
                    "sandbox teardown through CRI failed",
                    extra={"state_dir": str(state_dir), "error": str(e)},
                )
    for pid in daemons:
        removed.append(f"containerd pid {pid}")
        leftovers.kill_and_wait(pid, signal.SIGTERM, STOP_TIMEOUT_S)
    sandbox_ids = leftovers.task_ids(state_dir / "state", CRI_NAMESPACE)
    for pid in leftovers.processes_with_args("containerd-shim-runc-v2", ["-address", str(socket)]):
        removed.append(f"shim pid {pid}")
        leftovers.kill_and_wait(pid, signal.SIGKILL, STOP_TIMEOUT_S)
    for container in leftovers.runc_containers(state_dir / "state" / "runc"):
        removed += leftovers.kill_runc_container(container, STOP_TIMEOUT_S)
    if rt is not None:
        for pid in leftovers.cgroup_processes(rt.cgroup_root):
            removed.append(f"sandbox process pid {pid}")
            leftovers.kill_and_wait(pid, signal.SIGKILL, STOP_TIMEOUT_S)
    removed += [f"mount {m}" for m in leftovers.unmount_under(state_dir)]
    if rt is not None:
        removed += [f"cgroup {c}" for c in leftovers.remove_cgroups(rt.cgroup_root)]
    removed += [
        f"shim socket {s}" for s in leftovers.remove_shim_sockets(str(socket), CRI_NAMESPACE, sandbox_ids)
    ]
    removed += [f"cni result {r}" for r in leftovers.remove_cni_results(sandbox_ids, str(state_dir) + "/")]
    for sub in ("root", "state", "ipam", "opt"):
        leftovers.empty_dir(state_dir / sub)
    for f in ("containerd.sock", "containerd.sock.ttrpc", "containerd.pid"):
        (state_dir / f).unlink(missing_ok=True)
    leftovers.remove_empty_shared_dirs()
    if removed:
        log.info("containerd leftovers removed", extra={"state_dir": str(state_dir), "removed": removed})
    return removed


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


__all__ = [
    "CRI_NAMESPACE",
    "Containerd",
    "cleanup_leftovers",
    "remove_all_sandboxes",
    "share_netns_dir",
    "start_node_runtime",
]
