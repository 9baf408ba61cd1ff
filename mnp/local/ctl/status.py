"""`mnp local status`: is the cluster up? The API server, each component process, each node, the pods.

Facts are gathered by a thin shell; `report` (pure) turns them into text and a verdict, so what counts
as "down" is stated and tested in one place.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from mnp.api.errors import ApiError
from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.kinds import NODE, POD
from mnp.local.ctl.table import format_rows
from mnp.local.layout import Layout, LayoutError


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    pid: int | None  # None: the pid file is unreadable
    alive: bool


@dataclass(frozen=True, slots=True)
class Facts:
    apiserver_error: str | None  # None: it answered
    components: tuple[Component, ...] = ()
    expected_nodes: tuple[str, ...] | None = None  # from cluster.json; None when there is none
    node_ready: Mapping[str, str] = field(default_factory=dict)  # Node object → its Ready status
    pod_phases: Mapping[str, int] = field(default_factory=dict)


def report(facts: Facts, root: str) -> tuple[str, bool]:
    """The status text and whether everything is up."""
    ok = facts.apiserver_error is None
    rows = [["COMPONENT", "STATE"]]
    rows.append(["apiserver", "reachable" if ok else f"unreachable: {facts.apiserver_error}"])
    for c in facts.components:
        if c.name == "apiserver" and ok:
            continue
        ok = ok and c.alive
        rows.append([c.name, f"running (pid {c.pid})" if c.alive else "not running"])
    text = format_rows(rows)
    if facts.expected_nodes is None:
        ok = False
        text += f"\nno cluster in {root}: `mnp local up --dir {root}` creates one\n"
    if facts.apiserver_error is None:
        names = sorted(set(facts.expected_nodes or ()) | set(facts.node_ready))
        node_rows = [["NODE", "READY"]]
        for n in names:
            ready = facts.node_ready.get(n, "no Node object")
            ok = ok and ready == "True"
            node_rows.append([n, ready])
        if names:
            text += "\n" + format_rows(node_rows)
        phases = ", ".join(f"{count} {phase}" for phase, count in sorted(facts.pod_phases.items()))
        text += f"\npods: {phases or 'none'}\n"
    return text, ok


def _components(layout: Layout) -> tuple[Component, ...]:
    out = []
    pids = layout.pid_file("x").parent
    for path in sorted(pids.glob("*.pid")) if pids.is_dir() else []:
        try:
            pid: int | None = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        alive = False
        if pid is not None:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        out.append(Component(path.stem, pid, alive))
    return tuple(out)


async def gather(api: ClusterApi | None, layout: Layout) -> Facts:
    """What `report` needs, read from DIR and the API server (None: no kubeconfig to reach it)."""
    components = _components(layout)
    try:
        expected: tuple[str, ...] | None = tuple(n.name for n in layout.read_cluster().nodes)
    except LayoutError:
        expected = None
    if api is None:
        return Facts(f"no kubeconfig at {layout.kubeconfig}", components, expected)
    try:
        nodes = await api.list(NODE, None)
        pods = await api.list(POD, None)
    except ApiError as e:
        return Facts(str(e), components, expected)
    ready = {}
    for n in nodes:
        conditions = (n.get("status") or {}).get("conditions") or []
        ready[str(n["metadata"]["name"])] = next(
            (str(c.get("status")) for c in conditions if c.get("type") == "Ready"), "Unknown"
        )
    phases = Counter(str((p.get("status") or {}).get("phase") or "Pending") for p in pods)
    return Facts(None, components, expected, ready, dict(phases))


async def print_status(api: ClusterApi | None, layout: Layout, out: TextIO) -> int:
    text, ok = report(await gather(api, layout), str(layout.root))
    out.write(text)
    return 0 if ok else 1


__all__ = ["Component", "Facts", "gather", "print_status", "report"]
