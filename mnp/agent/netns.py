"""Finding a pod's network namespace on this node by pod uid, as the agent must: through CRI or /proc.

The runtime's record of the pod's ready sandbox (CRI) is asked first; /proc (the pod's oldest process,
found by its pod cgroup) serves when there is no runtime endpoint or it cannot be reached. A NetnsRef
carries the namespace's identity (device, inode), so the agent notices when a pod got a new sandbox.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mnp.api.errors import InvalidInput, MnpError, NetnsError

log = logging.getLogger(__name__)


class NetnsSource(StrEnum):
    CRI = "cri"
    PROCFS = "procfs"


@dataclass(frozen=True, slots=True)
class NetnsRef:
    """A pod's netns: a path the agent can open and the (st_dev, st_ino) of the namespace behind it."""

    path: str
    inode: int
    dev: int
    source: NetnsSource

    @property
    def identity(self) -> tuple[int, int]:
        """Equal for two refs exactly when they name the same namespace, whatever their paths."""
        return self.dev, self.inode


class FinderError(NetnsError):
    """A source of netns paths could not be asked: the runtime is unreachable or /proc unreadable."""


class Sandbox(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def netns_path(self) -> str: ...


class SandboxLookup(Protocol):
    """The part of a CRI client the finder uses (mnp.local.nodes.cri.CriClient is one).

    `find_sandbox` returns the newest ready sandbox of a pod, None when there is none, and raises an
    MnpError (or OSError) when the runtime cannot be asked.
    """

    def find_sandbox(self, pod_uid: str) -> Sandbox | None: ...

    def close(self) -> None: ...


class CriFinder:
    """A pod's netns from its newest ready sandbox, asked of the container runtime over CRI.

    `endpoint` is `unix:///path` or a path, as the agent sees it; the netns path the runtime reports is
    a host path and gets `host_prefix` put before it. `connect` makes a client for a socket path (the
    agent does not depend on the local cluster's package, so cli.py passes CriClient). One client is
    kept and dropped after an error, so the next call reconnects.
    """

    def __init__(
        self, endpoint: str, host_prefix: str = "", *, connect: Callable[[str], SandboxLookup]
    ) -> None:
        self.endpoint = endpoint
        self.socket_path = socket_path(endpoint)
        self.host_prefix = host_prefix
        self._connect = connect
        self._client: SandboxLookup | None = None

    def find(self, pod_uid: str) -> NetnsRef | None:
        """The netns of the pod's newest ready sandbox; None when it has none; FinderError if CRI fails."""
        sandbox = self._sandbox(pod_uid)
        if sandbox is None:
            return None
        try:
            return netns_ref(under(self.host_prefix, sandbox.netns_path), NetnsSource.CRI)
        except FileNotFoundError:
            pass
        # Removed between the runtime's answer and the stat (the pod is going), or a wrong host prefix.
        again = self._sandbox(pod_uid)
        if again is None:
            return None
        path = under(self.host_prefix, again.netns_path)
        try:
            return netns_ref(path, NetnsSource.CRI)
        except OSError as e:
            raise FinderError(f"netns {path} of pod {pod_uid} (from CRI): {e.strerror}") from e

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _sandbox(self, pod_uid: str) -> Sandbox | None:
        try:
            if self._client is None:
                self._client = self._connect(self.socket_path)
            return self._client.find_sandbox(pod_uid)
        except (MnpError, OSError) as e:
            self.close()
            raise FinderError(f"CRI {self.endpoint}: {e}") from e


# A pod's cgroup, as the kubelet names it: `pod<uid>` (cgroupfs driver) or, with the systemd driver,
# `kubepods-<qos>-pod<uid with _ for ->.slice`. Whole path components only, so no uid matches a longer one.
_CGROUPFS_POD = re.compile(r"pod([0-9a-fA-F][0-9a-fA-F-]*)")
_SYSTEMD_POD = re.compile(r"(?:[\w.-]*-)?pod([0-9a-fA-F][0-9a-fA-F_]*)\.slice")


def pod_uid_of_cgroup(path: str) -> str | None:
    """The pod uid in a cgroup path (a line's path of /proc/PID/cgroup), or None if it is no pod's."""
    for part in reversed(path.split("/")):
        if m := _CGROUPFS_POD.fullmatch(part):
            return m.group(1)
        if m := _SYSTEMD_POD.fullmatch(part):
            return m.group(1).replace("_", "-")
    return None


class ProcfsFinder:
    """A pod's netns from /proc: the oldest process in the pod's cgroup (the sandbox's pause process).

    The oldest, not any: container processes come and go with restarts, the sandbox stays. `proc` is
    the procfs of the host's pid namespace as the agent sees it, under `host_prefix` if given.
    """

    def __init__(self, proc: str = "/proc", host_prefix: str = "") -> None:
        self.proc = under(host_prefix, proc)

    def find(self, pod_uid: str) -> NetnsRef | None:
        """The pod's netns, None when no live process of the pod is found; FinderError if /proc fails."""
        return self.find_many([pod_uid])[pod_uid]

    def find_many(self, pod_uids: Iterable[str]) -> dict[str, NetnsRef | None]:
        """find() for many pods with one pass over /proc."""
        wanted = set(pod_uids)
        found: dict[str, NetnsRef | None] = dict.fromkeys(wanted)
        for uid, pids in self.pod_processes(wanted).items():
            for pid in pids:
                try:
                    found[uid] = netns_ref(f"{self.proc}/{pid}/ns/net", NetnsSource.PROCFS)
                    break
                except OSError:  # exited (or a zombie) since the scan: the next oldest will do
                    continue
        return found

    def pod_processes(self, pod_uids: set[str] | None = None) -> dict[str, list[int]]:
        """pid lists by pod uid (of `pod_uids` only, if given), each oldest first; one pass over /proc."""
        by_uid: dict[str, list[tuple[int, int]]] = {}
        for pid, uid in self._pid_uids():
            if pod_uids is not None and uid not in pod_uids:
                continue
            started = _start_time(f"{self.proc}/{pid}/stat")
            if started is not None:
                by_uid.setdefault(uid, []).append((started, pid))
        return {uid: [pid for _, pid in sorted(procs)] for uid, procs in by_uid.items()}

    def _pid_uids(self) -> Iterable[tuple[int, str]]:
        try:
            entries = [e.name for e in os.scandir(self.proc) if e.name.isdigit()]
        except OSError as e:
            raise FinderError(f"list {self.proc}: {e.strerror}") from e
        for name in entries:
            try:
                with open(f"{self.proc}/{name}/cgroup") as f:
                    text = f.read()
            except OSError:  # exited since the listing
                continue
            uid = next(
                (u for line in text.splitlines() if (u := pod_uid_of_cgroup(line.split(":", 2)[-1]))), None
            )
            if uid is not None:
                yield int(name), uid


class NetnsFinder:
    """CRI first; /proc when there is no CRI endpoint or CRI cannot be asked.

    A pod CRI says has no ready sandbox has no netns: /proc is not asked then, as a process left over
    from a stopped sandbox is no place to enforce policy. The switch to /proc is logged once per run
    of CRI failures, and the return to CRI once.
    """

    def __init__(self, cri: CriFinder | None, procfs: ProcfsFinder) -> None:
        self.cri = cri
        self.procfs = procfs
        self._cri_failing = False
        if cri is None:
            log.info(
                "no container runtime endpoint: finding pod netns through procfs", extra={"proc": procfs.proc}
            )

    def find(self, pod_uid: str) -> NetnsRef | None:
        """The pod's netns, None when it has none; FinderError only when neither source can be asked."""
        return self.find_many([pod_uid])[pod_uid]

    def find_many(self, pod_uids: Iterable[str]) -> dict[str, NetnsRef | None]:
        """find() for many pods; /proc is read once for all that CRI could not answer."""
        found: dict[str, NetnsRef | None] = {}
        rest = sorted(set(pod_uids))
        if self.cri is not None:
            while rest:
                try:
                    found[rest[0]] = self.cri.find(rest[0])
                except FinderError as e:
                    self._cri_failed(e)
                    break  # one timeout per batch is enough
                self._cri_answered()
                rest.pop(0)
        if rest:
            found.update(self.procfs.find_many(rest))
        return found

    def close(self) -> None:
        if self.cri is not None:
            self.cri.close()

    def _cri_failed(self, error: FinderError) -> None:
        if not self._cri_failing:
            log.warning("CRI failed: finding pod netns through procfs", extra={"error": str(error)})
        self._cri_failing = True

    def _cri_answered(self) -> None:
        if self._cri_failing:
            log.info("CRI answers again: finding pod netns through CRI")
        self._cri_failing = False


def netns_ref(path: str, source: NetnsSource) -> NetnsRef:
    """stat `path` (following /proc's ns links to the namespace itself); OSError when it is gone."""
    st = os.stat(path)
    return NetnsRef(path=path, inode=st.st_ino, dev=st.st_dev, source=source)


def socket_path(endpoint: str) -> str:
    """The socket path of a CRI endpoint `unix:///path` or `/path`; only unix sockets are supported."""
    path = endpoint.removeprefix("unix://")
    if not path.startswith("/"):
        raise InvalidInput("", f"container runtime endpoint {endpoint!r}: expected unix:///PATH or /PATH")
    return path


def under(prefix: str, path: str) -> str:
    """`path` (a host path) as seen by a process that has the host's / at `prefix` ("" for /)."""
    return f"{prefix.rstrip('/')}/{path.lstrip('/')}" if prefix else path


def _start_time(stat_path: str) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None once the process is gone."""
    try:
        with open(stat_path) as f:
            text = f.read()
        # comm (field 2) is in parentheses and may hold spaces or ')': fields 3.. follow the last ')'.
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


__all__ = [
    "CriFinder",
    "FinderError",
    "NetnsFinder",
    "NetnsRef",
    "NetnsSource",
    "ProcfsFinder",
    "Sandbox",
    "SandboxLookup",
    "pod_uid_of_cgroup",
    "socket_path",
    "under",
]
