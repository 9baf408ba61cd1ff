"""CPU seconds spent by each kind of process on the machine over a window, read from /proc.

The benchmarks that run a whole local cluster (API server, kubelets, containerds, mnp's controller and
agents as pods, the pods' own processes) use it to say where the 2 cores went while they measured: a
latency figure alone cannot tell a slow component from a starved one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
GROUPS = (
    "apiserver",
    "controller",
    "agent",
    "kubelet",
    "workloads",
    "containerd",
    "shim",
    "bench",
    "pods",
    "kernel",
    "other",
)


def _group(argv: list[str]) -> str:
    if not argv:
        return "kernel"  # kernel threads: netns teardown, softirqs, reclaim
    head = " ".join(argv[:5])
    if "mnp" in head:
        for name in ("apiserver", "kubelet", "workloads", "controller", "agent"):
            if name in head:
                return name
    joined = " ".join(argv)
    if "containerd-shim" in joined:
        return "shim"
    if argv[0].endswith("containerd"):
        return "containerd"
    if any(Path(a).parent.name == "bench" for a in argv[:3]):
        return "bench"
    if argv[0] in ("sleep", "busybox") or argv[0].endswith("/sleep"):
        return "pods"
    return "other"


def snapshot() -> dict[int, tuple[str, float]]:
    """Every live process: its group and its CPU seconds (user + system) so far."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / HZ
        found[int(entry.name)] = (_group([a.decode(errors="replace") for a in argv if a]), seconds)
    return found


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (processes started meanwhile count from zero;
    those that ended meanwhile are lost, which the callers' windows keep rare)."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for pid, (group, seconds) in after.items():
        totals[group] += seconds - before.get(pid, (group, 0.0))[1]
    return totals


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all CPUs, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / HZ


async def settled(limit: float = 0.25, timeout: float = 30.0) -> float:
    """Wait until the machine used under `limit` of one CPU over half a second (earlier work such as a
    previous cluster's namespace teardown, done by kernel threads, has ended); the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = busy_seconds()
        await asyncio.sleep(0.5)
        if busy_seconds() - before < limit * 0.5:
            break
    return time.monotonic() - started


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """`with measured() as cpu:` fills `cpu` with the CPU seconds per group spent inside the block."""
    result: dict[str, float] = {}
    before = snapshot()
    try:
        yield result
    finally:
        result.update(spent(before, snapshot()))
