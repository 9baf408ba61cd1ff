"""Finding and removing what a dead containerd and its sandboxes leave on the machine.

Used by crash recovery and by every teardown as the final sweep: processes recognised by their
command line or cgroup, mounts under a state dir, pod cgroup trees in every hierarchy, and the few
places containerd 1.6 writes outside its configured dirs (/run/containerd/s shim sockets, libcni's
/var/lib/cni/results). Only things provably belonging to the caller's state dir are touched.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnp.api.errors import MnpError

SHIM_SOCKET_DIR = Path("/run/containerd/s")
# Created by containerd or libcni when absent; removed again once empty (other instances may share them).
SHARED_DIRS = (
    Path("/run/containerd/s"),
    Path("/run/containerd/runc/k8s.io"),
    Path("/run/containerd/runc"),
    Path("/run/containerd"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
)
CNI_RESULTS_DIR = Path("/var/lib/cni/results")
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class LeftoverError(MnpError):
    """A leftover could not be removed (a mount that will not detach, a cgroup still in use)."""


def iter_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every live process; processes that vanish while being read are skipped."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            yield int(entry), raw.rstrip(b"\0").decode(errors="replace").split("\0")


def processes_with_args(program: str, args: Sequence[str]) -> list[int]:
    """Pids whose argv[0] ends in `program` and whose argv holds `args` as consecutive items."""
    found = []
    n = len(args)
    for pid, argv in iter_processes():
        if not argv or os.path.basename(argv[0]) != program:
            continue
        if any(argv[i : i + n] == list(args) for i in range(1, len(argv) - n + 1)):
            found.append(pid)
    return sorted(found)


def kill_and_wait(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Send `sig` to pid and wait until it is gone (SIGKILL after `timeout`); reaps it if it is a child."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    while process_alive(pid):
        if time.monotonic() > deadline and sig != signal.SIGKILL:
            sig = signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
        elif time.monotonic() > deadline:
            raise LeftoverError(f"pid {pid} survives SIGKILL")
        time.sleep(0.005)


def process_alive(pid: int) -> bool:
    """False once pid is gone or a zombie (orphans wait for PID 1 to reap them, which may be slow)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child becomes a zombie until reaped
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass(frozen=True, slots=True)
class RuncContainer:
    """What runc's state.json says about a container: its init process and its own cgroups."""

    id: str
    init_pid: int
    init_start: int  # start time in clock ticks since boot (/proc/<pid>/stat field 22)
    cgroup_paths: tuple[str, ...]


def runc_containers(runc_root: Path) -> list[RuncContainer]:
    """The containers a runc root (with its per-namespace subdirs) still has state for."""
    found = []
    for state in sorted(runc_root.glob("*/*/state.json")):
        try:
            raw = json.loads(state.read_text())
            found.append(
                RuncContainer(
                    id=str(raw["id"]),
                    init_pid=int(raw["init_process_pid"]),
                    init_start=int(raw["init_process_start"]),
                    cgroup_paths=tuple(sorted(str(p) for p in (raw.get("cgroup_paths") or {}).values())),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def kill_runc_container(container: RuncContainer, timeout: float) -> list[str]:
    """SIGKILL the container's init (if that pid is still the same process) and rmdir its cgroups.

    Covers sandboxes whose cgroup parent lies outside the node's cgroup root, after their shim died.
    """
    removed = []
    if process_alive(container.init_pid) and _start_time(container.init_pid) == container.init_start:
        kill_and_wait(container.init_pid, signal.SIGKILL, timeout)
        removed.append(f"sandbox process pid {container.init_pid}")
    for path in container.cgroup_paths:
        if Path(path).is_relative_to("/sys/fs/cgroup"):
            try:
                Path(path).rmdir()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise LeftoverError(f"rmdir cgroup {path}: {e.strerror}") from e
            removed.append(f"cgroup {path}")
    return removed


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy, one per hierarchy."""
    seen: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            fields = left.split()
            seen.setdefault(fields[2], Path(_unescape(fields[4])))  # major:minor = one hierarchy
    return sorted(seen.values())


def _cgroup_dirs(cgroup_root: str) -> list[Path]:
    rel = cgroup_root.strip("/")
    if not rel or ".." in rel.split("/"):
        raise LeftoverError(f"{cgroup_root!r} is not a cgroup path of ours")
    return [h / rel for h in cgroup_hierarchies() if (h / rel).is_dir()]


def cgroup_processes(cgroup_root: str) -> list[int]:
    """Pids in the cgroup tree `cgroup_root` of any hierarchy."""
    pids: set[int] = set()
    for top in _cgroup_dirs(cgroup_root):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def remove_cgroups(cgroup_root: str) -> list[str]:
    """rmdir the cgroup tree `cgroup_root` (deepest first) in every hierarchy, then its empty parents."""
    removed = []
    for top in _cgroup_dirs(cgroup_root):
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True)
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise LeftoverError(f"rmdir cgroup {d}: {e.strerror}") from e
            removed.append(str(d))
    # Parents shared with other nodes (a cluster's common prefix) go once the last of them is gone.
    rel = Path(cgroup_root.strip("/"))
    for hierarchy in cgroup_hierarchies():
        for parent in [hierarchy / p for p in rel.parents if str(p) != "."]:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (another node still has pods) or already gone
            removed.append(str(parent))
    return removed


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == str(path) or point.startswith(prefix):
            points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True)


def unmount_under(path: Path) -> list[str]:
    """Detach every mount at or below `path` (netns bind mounts, sandbox rootfs and shm); returns them.

    A netns bind mount is the last reference to a stopped pod's netns: detaching it destroys the
    namespace and the links in it.
    """
    done: list[str] = []
    for _ in range(10):  # stacked mounts reappear one level down after the top one is detached
        points = mounts_under(path)
        if not points:
            return done
        for point in points:
            if _libc.umount2(point.encode(), _MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more), or gone
                    raise LeftoverError(f"umount {point}: {os.strerror(err)}")
            done.append(point)
    left = mounts_under(path)
    if left:
        raise LeftoverError(f"mounts under {path} will not go: {left}")
    return done


def task_ids(state: Path, namespace: str) -> list[str]:
    """Ids of the tasks (sandboxes and containers) containerd's v2 runtime has bundles for."""
    bundles = state / "io.containerd.runtime.v2.task" / namespace
    with contextlib.suppress(OSError):
        return sorted(d.name for d in bundles.iterdir() if d.is_dir())
    return []


def shim_socket(address: str, namespace: str, task_id: str) -> Path:
    """Where containerd 1.6 puts a shim's socket: /run/containerd/s/sha256(<address>/<ns>/<id>)."""
    digest = hashlib.sha256(os.path.join(address, namespace, task_id).encode()).hexdigest()
    return SHIM_SOCKET_DIR / digest


def remove_shim_sockets(address: str, namespace: str, ids: Iterable[str]) -> list[str]:
    removed = []
    for task_id in ids:
        sock = shim_socket(address, namespace, task_id)
        if sock.exists() or sock.is_symlink():
            sock.unlink(missing_ok=True)
            removed.append(str(sock))
    return removed


def remove_cni_results(ids: Iterable[str], marker: str) -> list[str]:
    """libcni's cached results (<network>-<container id>-<ifname>) of these sandboxes, and of every
    sandbox whose cached network config mentions `marker` (a path only this node's config has).

    The marker catches sandboxes whose ids are gone: containerd ignores a CNI DEL that fails with
    "not found" (a primary network whose master link vanished), keeps the cache file, and then
    removes the sandbox and its id for good.
    """
    wanted = set(ids)
    files: list[tuple[Path, str]] = []
    with contextlib.suppress(OSError):
        for f in sorted(CNI_RESULTS_DIR.iterdir()):
            try:
                cached = json.loads(f.read_text())
                container = str(cached["containerId"])
                config = base64.b64decode(str(cached.get("config") or "")).decode(errors="replace")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            files.append((f, container))
            if marker and marker in config:
                wanted.add(container)
    removed = []
    for f, container in files:
        if container in wanted:
            f.unlink(missing_ok=True)
            removed.append(str(f))
    return removed


def empty_dir(path: Path) -> None:
    """Remove everything inside `path` (kept itself); refuses while anything below is mounted."""
    if not path.is_dir():
        return
    if mounts_under(path):
        raise LeftoverError(f"{path} still has mounts: {mounts_under(path)}")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)


def remove_empty_shared_dirs() -> list[str]:
    """rmdir the shared dirs containerd or libcni created, where empty (deepest first)."""
    removed = []
    for d in SHARED_DIRS:
        with contextlib.suppress(OSError):
            d.rmdir()
            removed.append(str(d))
    return removed


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


__all__ = [
    "LeftoverError",
    "RuncContainer",
    "cgroup_hierarchies",
    "cgroup_processes",
    "empty_dir",
    "iter_processes",
    "kill_runc_container",
    "kill_and_wait",
    "mounts_under",
    "process_alive",
    "processes_with_args",
    "remove_cgroups",
    "remove_cni_results",
    "remove_empty_shared_dirs",
    "remove_shim_sockets",
    "runc_containers",
    "shim_socket",
    "task_ids",
    "unmount_under",
]
