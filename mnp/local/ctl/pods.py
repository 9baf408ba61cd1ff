"""`mnp local exec` and `mnp local logs`: find a pod and its container, then its netns or its log file.

exec runs a host command in the pod's network namespace (found by pod uid through the node's CRI
socket; hostNetwork pods use the root netns); logs prints the file the node wrote for the container's
current (or previous) run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mnp.api.errors import MnpError
from mnp.local.ctl.api import ClusterApi, get_or_none
from mnp.local.ctl.kinds import POD
from mnp.local.layout import Layout

# (node, pod uid) → the path of the pod's network namespace, or None when it has no sandbox yet.
NetnsLookup = Callable[[str, str], str | None]


class PodError(MnpError):
    """The pod or container cannot be used (absent, not running, no sandbox); says what to do next."""


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_pod_ref(text: str) -> PodRef:
    """`NS/POD` (or `POD` in the default namespace); raises ValueError."""
    ns, sep, name = text.partition("/")
    if not sep:
        ns, name = "default", text
    if not ns or not name or "/" in name:
        raise ValueError(f"{text!r} is not NAMESPACE/POD")
    return PodRef(ns, name)


async def bound_pod(api: ClusterApi, ref: PodRef) -> dict[str, Any]:
    """The pod, which must exist and be bound to a node."""
    pod = await get_or_none(api, POD, ref.namespace, ref.name)
    if pod is None:
        raise PodError(f"pod {ref} not found; `mnp local get pods -n {ref.namespace}` lists the pods there")
    if not (pod.get("spec") or {}).get("nodeName"):
        raise PodError(f"pod {ref} is not scheduled to a node yet; `mnp local wait` waits for it")
    return pod


def _containers(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        str(c.get("name")) for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    ]


def pick_container(pod: Mapping[str, Any], ref: PodRef, container: str | None) -> str:
    """The named container (checked), or the pod's first container."""
    names = _containers(pod)
    if container is None:
        if not names:
            raise PodError(f"pod {ref} has no containers")
        return names[0]
    if container not in names:
        raise PodError(f"pod {ref} has no container {container!r} (containers: {', '.join(names)})")
    return container


def exec_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The command line running `argv` in `netns` (None: the root netns, for hostNetwork pods)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={netns}", "--", *argv]


async def pod_netns(api: ClusterApi, ref: PodRef, container: str | None, lookup: NetnsLookup) -> str | None:
    """The netns path `exec` enters for this pod (None: hostNetwork, the root netns); raises PodError."""
    pod = await bound_pod(api, ref)
    pick_container(pod, ref, container)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        raise PodError(f"pod {ref} is being deleted")
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase != "Running":
        raise PodError(f"pod {ref} is {phase}, not Running; `mnp local wait` waits for it")
    if (pod.get("spec") or {}).get("hostNetwork"):
        return None
    node = str(pod["spec"]["nodeName"])
    netns = lookup(node, str(pod["metadata"]["uid"]))
    if netns is None:
        raise PodError(f"pod {ref} has no sandbox on {node} yet; `mnp local wait` waits for it")
    return netns


def run_command(argv: Sequence[str]) -> int:
    """Run with stdin, stdout and stderr inherited; the exit status, 128+N for a signal N."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        print(f"error: {argv[0]}: command not found", file=sys.stderr)
        return 127
    # Ctrl-C reaches the child (same process group) and is its to handle. A handler, not SIG_IGN: an
    # ignored signal would stay ignored in the child across exec.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        code = subprocess.call(list(argv))
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code


def log_path(layout: Layout, pod: Mapping[str, Any], ref: PodRef, container: str, previous: bool) -> Path:
    """The log file of the container's current run (restartCount), or of the run before it."""
    status = pod.get("status") or {}
    statuses = [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]
    restarts = next((int(s.get("restartCount") or 0) for s in statuses if s.get("name") == container), None)
    if restarts is None:
        raise PodError(
            f"container {container} of pod {ref} has not started yet; `mnp local wait` waits for it"
        )
    if previous and restarts == 0:
        raise PodError(f"container {container} of pod {ref} has not restarted: there is no previous log")
    meta = pod["metadata"]
    return layout.container_log(
        str(pod["spec"]["nodeName"]),
        ref.namespace,
        ref.name,
        str(meta["uid"]),
        container,
        restarts - previous,
    )


async def print_logs(
    api: ClusterApi, layout: Layout, ref: PodRef, container: str | None, previous: bool, out: BinaryIO
) -> None:
    """Copy the container's log file to `out`; raises PodError when there is none."""
    pod = await bound_pod(api, ref)
    name = pick_container(pod, ref, container)
    path = log_path(layout, pod, ref, name, previous)
    try:
        with path.open("rb") as f:
            shutil.copyfileobj(f, out)
    except FileNotFoundError:
        raise PodError(
            f"no log for container {name} of pod {ref} at {path}: it has written nothing yet"
        ) from None


__all__ = [
    "NetnsLookup",
    "PodError",
    "PodRef",
    "exec_argv",
    "log_path",
    "parse_pod_ref",
    "pick_container",
    "pod_netns",
    "print_logs",
    "run_command",
]
