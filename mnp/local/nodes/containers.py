"""The processes of one local-cluster pod's containers: started, restarted per restartPolicy, stopped.

Each container runs as a host process started through `mnp.local.nodes.launch` (cgroup, private mount
namespace, pod netns, then exec of its command). A thread per container waits for it, restarts it with
capped exponential back-off, and keeps a Kubernetes-shaped `ContainerStatus`; `on_change` is called
from that thread whenever a status changes. The kubelet owns sandboxes, networks and the API status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mnp.api.errors import InvalidInput, MnpError
from mnp.local.nodes.launch import LaunchSpec
from mnp.local.nodes.leftovers import cgroup_hierarchies, cgroup_processes, process_alive
from mnp.local.nodes.mounts import prepare_sources
from mnp.local.nodes.netns import resolve_netns
from mnp.local.nodes.podspec import ContainerSpec, InvalidContainer

log = logging.getLogger(__name__)

RestartPolicy = Literal["Always", "OnFailure", "Never"]
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 10.0  # a container that ran this long starts its back-off over
_KILL_TIMEOUT = 10.0


class ContainerError(MnpError):
    """A container's processes or cgroups could not be cleaned up."""


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str
    message: str = ""

    def to_raw(self) -> dict[str, Any]:
        raw = {"reason": self.reason}
        if self.message:
            raw["message"] = self.message
        return {"waiting": raw}


@dataclass(frozen=True, slots=True)
class Running:
    started_at: datetime

    def to_raw(self) -> dict[str, Any]:
        return {"running": {"startedAt": _timestamp(self.started_at)}}


@dataclass(frozen=True, slots=True)
class Terminated:
    exit_code: int
    reason: str  # Completed, Error, StartError
    started_at: datetime | None
    finished_at: datetime
    container_id: str
    message: str = ""

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason}
        if self.message:
            raw["message"] = self.message
        if self.started_at is not None:
            raw["startedAt"] = _timestamp(self.started_at)
        raw["finishedAt"] = _timestamp(self.finished_at)
        raw["containerID"] = self.container_id
        return {"terminated": raw}


ContainerState = Waiting | Running | Terminated


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """One entry of a pod's status.containerStatuses."""

    name: str
    container_id: str  # "" until the first start
    restart_count: int
    state: ContainerState
    last_state: ContainerState | None
    ready: bool
    started: bool
    image: str = ""

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "name": self.name,
            "state": self.state.to_raw(),
            "lastState": self.last_state.to_raw() if self.last_state else {},
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": "",
            "started": self.started,
        }
        if self.container_id:
            raw["containerID"] = self.container_id
        return raw


@dataclass
class _Container:
    spec: ContainerSpec
    cgroup: str
    status: ContainerStatus
    proc: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None


class PodProcesses:
    """The container processes of one pod; thread-safe."""

    def __init__(
        self,
        pod_key: str,
        containers: Sequence[ContainerSpec | InvalidContainer],
        *,
        netns: str | None,
        cgroup_parent: str,
        log_dir: Path,
        restart_policy: RestartPolicy,
        on_change: Callable[[], None],
    ) -> None:
        rel = cgroup_parent.strip("/")
        if not rel or ".." in rel.split("/"):
            raise ContainerError(f"{cgroup_parent!r} is not a cgroup path")
        if restart_policy not in ("Always", "OnFailure", "Never"):
            raise ContainerError(f"{pod_key}: unknown restartPolicy {restart_policy!r}")
        self.pod_key = pod_key
        self._netns = resolve_netns(netns) if netns is not None else None
        self._log_dir = log_dir
        self._policy = restart_policy
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        self._order: list[str] = []
        self._invalid: dict[str, ContainerStatus] = {}
        self._containers: dict[str, _Container] = {}
        self._created_cgroups: list[Path] = []
        for c in containers:
            self._order.append(c.name)
            if isinstance(c, InvalidContainer):
                self._invalid[c.name] = _status(
                    c.name, c.image, Waiting("CreateContainerConfigError", c.message)
                )
            else:
                waiting = _status(c.name, c.image, Waiting("ContainerCreating"))
                self._containers[c.name] = _Container(c, f"{rel}/{c.name}", waiting)

    def start(self) -> None:
        """Create the containers' cgroups and start every valid container (once)."""
        with self._lock:
            if self._started or self._stop.is_set():
                raise ContainerError(f"{self.pod_key}: containers already started")
            self._started = True
        for c in self._containers.values():
            self._created_cgroups += _make_cgroup(c.cgroup)
            (self._log_dir / c.spec.name).mkdir(parents=True, exist_ok=True)
            c.thread = threading.Thread(
                target=self._supervise, args=(c,), name=f"container {self.pod_key}/{c.spec.name}", daemon=True
            )
            c.thread.start()

    def statuses(self) -> list[ContainerStatus]:
        with self._lock:
            return [
                self._containers[n].status if n in self._containers else self._invalid[n] for n in self._order
            ]

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM every container, SIGKILL what is left after the grace period, reap, remove cgroups."""
        with self._lock:
            self._stop.set()  # under the lock: no start happens after this
            procs = [c.proc for c in self._containers.values() if c.proc is not None]
        for running in procs:
            with contextlib.suppress(ProcessLookupError):
                running.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for c in self._containers.values():
            if c.thread is not None:
                c.thread.join(max(0.0, deadline - time.monotonic()))
        for c in self._containers.values():
            proc = c.proc
            if c.thread is not None and c.thread.is_alive():
                if proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGKILL)
                kill_all_in_cgroup(c.cgroup, remove=False)
        for c in self._containers.values():
            if c.thread is not None:
                c.thread.join(_KILL_TIMEOUT)
                if c.thread.is_alive():
                    raise ContainerError(f"{self.pod_key}/{c.spec.name}: container thread does not end")
        leaves = {h / c.cgroup for c in self._containers.values() for h in cgroup_hierarchies()}
        # A parent this pod made may since hold others' groups (the sandbox's): it stays, then.
        _remove_dirs([d for d in self._created_cgroups if d in leaves])
        for parent in sorted(set(self._created_cgroups) - leaves, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                parent.rmdir()
        self._created_cgroups = []

    # --- the supervisor thread of one container ---

    def _supervise(self, c: _Container) -> None:
        failures = 0
        starts = 0
        while not self._stop.is_set():
            try:
                prepare_sources([check for m in c.spec.mounts for check in m.checks])
            except InvalidInput as e:
                waiting = Waiting("CreateContainerConfigError", e.describe())
                self._set(c, replace(c.status, state=waiting, ready=False, started=False))
                failures += 1
                self._stop.wait(_backoff(failures))
                continue
            container_id = "containerd://" + secrets.token_hex(32)
            ended = self._run_once(c, container_id, restart=starts)
            if ended is None:  # stopped before it could start
                return
            starts += 1
            ran = ended.finished_at - (ended.started_at or ended.finished_at)
            failures = 1 if ran.total_seconds() >= BACKOFF_RESET_AFTER else failures + 1
            restart = not self._stop.is_set() and (
                self._policy == "Always" or (self._policy == "OnFailure" and ended.exit_code != 0)
            )
            # A start that failed in the launcher never ran, but it counts like any other.
            base = replace(
                c.status, container_id=container_id, restart_count=starts - 1, ready=False, started=False
            )
            if not restart:
                self._set(c, replace(base, state=ended))
                return
            delay = _backoff(failures)
            message = f"back-off {delay:g}s restarting failed container={c.spec.name} pod={self.pod_key}"
            self._set(c, replace(base, state=Waiting("CrashLoopBackOff", message), last_state=ended))
            self._stop.wait(delay)

    def _run_once(self, c: _Container, container_id: str, restart: int) -> Terminated | None:
        spec = c.spec
        launch = LaunchSpec(
            argv=spec.argv,
            env=spec.env,
            working_dir=spec.working_dir,
            mounts=spec.mounts,
            netns=self._netns,
            cgroup=c.cgroup,
            log=str(self._log_dir / spec.name / f"{restart}.log"),
        )
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                if self._stop.is_set():
                    return None
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "mnp.local.nodes.launch", "--status-fd", str(write_end)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        pass_fds=(write_end,),
                        start_new_session=True,
                    )
                except OSError as e:  # containerd reports a failed start with exit code 128
                    return Terminated(128, "StartError", None, _now(), container_id, f"start launcher: {e}")
                c.proc = proc
            os.close(write_end)
            write_end = -1
            started = _now()
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(launch.to_json().encode())
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            failure = _read_all(read_end)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        if not failure:  # the exec closed the status pipe: the command runs
            started = _now()
            running = Running(started)
            self._set(
                c,
                replace(
                    c.status,
                    container_id=container_id,
                    restart_count=restart,
                    state=running,
                    ready=True,
                    started=True,
                ),
            )
        code = proc.wait()
        finished = _now()
        # As when a pid namespace's init dies: whatever the command left behind goes with it.
        try:
            kill_all_in_cgroup(c.cgroup, remove=False)
        except ContainerError:
            log.exception("container leftovers survive", extra={"object": self.pod_key})
        with self._lock:
            c.proc = None
        exit_code = 128 - code if code < 0 else code
        if failure:
            try:
                report = json.loads(failure)
                return Terminated(
                    exit_code, str(report["reason"]), None, finished, container_id, str(report["message"])
                )
            except (ValueError, KeyError, TypeError):
                return Terminated(exit_code, "StartError", None, finished, container_id, failure.strip())
        return Terminated(
            exit_code, "Completed" if exit_code == 0 else "Error", started, finished, container_id
        )

    def _set(self, c: _Container, status: ContainerStatus) -> None:
        with self._lock:
            changed = status != c.status
            c.status = status
        if changed:
            try:
                self._on_change()
            except Exception:
                log.exception("container status callback failed", extra={"object": self.pod_key})


def kill_all_in_cgroup(cgroup: str, *, remove: bool = True) -> list[int]:
    """SIGKILL every process in the cgroup tree `cgroup` (all hierarchies) until none is left; returns
    the pids killed. With `remove`, the tree's directories go too (not its parents): crash recovery.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + _KILL_TIMEOUT
    while True:
        pids = [p for p in cgroup_processes(cgroup) if p != os.getpid()]
        live = [p for p in pids if process_alive(p)]
        if not live:
            break
        if time.monotonic() > deadline:
            raise ContainerError(f"processes in cgroup {cgroup} survive SIGKILL: {live}")
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.01)
    if remove:
        rel = cgroup.strip("/")
        for hierarchy in cgroup_hierarchies():
            top = hierarchy / rel
            if top.is_dir():
                _remove_dirs([top, *(d for d in top.rglob("*") if d.is_dir())])
    return sorted(killed)


def _make_cgroup(rel: str) -> list[Path]:
    """mkdir `rel` in every hierarchy; returns the dirs this call created (to remove them later)."""
    created: list[Path] = []
    try:
        for hierarchy in cgroup_hierarchies():
            path = hierarchy
            for part in rel.split("/"):
                path = path / part
                if path.is_dir():
                    continue
                try:
                    path.mkdir()
                except FileExistsError:
                    continue  # made by a container of another pod starting at the same moment
                created.append(path)
                _inherit_cpuset(path)
    except OSError as e:
        _remove_dirs(created)
        raise ContainerError(f"create cgroup {rel}: {e}") from e
    return created


def _inherit_cpuset(path: Path) -> None:
    """cgroup v1 cpuset starts a new group with no cpus or mems, where no task may join: copy them."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        mine = path / name
        if mine.exists() and not mine.read_text().strip():
            mine.write_text((path.parent / name).read_text())


def _remove_dirs(dirs: Sequence[Path]) -> None:
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ContainerError(f"rmdir cgroup {d}: {e.strerror}") from e


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _backoff(failures: int) -> float:
    return min(BACKOFF_FIRST * float(2 ** max(0, failures - 1)), BACKOFF_MAX)


def _status(name: str, image: str, state: ContainerState) -> ContainerStatus:
    return ContainerStatus(name, "", 0, state, None, ready=False, started=False, image=image)


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "ContainerError",
    "ContainerState",
    "ContainerStatus",
    "PodProcesses",
    "RestartPolicy",
    "Running",
    "Terminated",
    "Waiting",
    "kill_all_in_cgroup",
]
