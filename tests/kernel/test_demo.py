"""`mnp demo` end to end, run as a user runs it (`bash hack/demo.sh`, `mnp demo`): a real local cluster
with mnp deployed, real pods and connections. The output is read like a user reads it, and afterwards
nothing of the demo's cluster may be left on the machine — also when it is stopped with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnp.local.layout import Layout
from mnp.local.nodes import leftovers
from mnp.local.nodes.netns import list_netns

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
MNP = str(Path(sys.executable).parent / "mnp")
DEMO_TIMEOUT_S = 300

# What the sample app's policy must allow (rows connect from, columns to), written out by hand.
BEFORE = {
    "frontend": ["·", "✔", "✔", "✔"],
    "backend": ["✔", "·", "✔", "✔"],
    "db": ["✔", "✔", "·", "✔"],
    "monitor": ["✔", "✔", "✔", "·"],
}
AFTER = {
    "frontend": ["·", "✔", "✘*", "✔"],
    "backend": ["✔", "·", "✔", "✔"],
    "db": ["✘*", "✘*", "·", "✘*"],
    "monitor": ["✔", "✔", "✔", "·"],
}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def directory(self) -> Path:
        found = re.search(r"local cluster in (\S+)", self.out)
        assert found, self.out
        return Path(found.group(1))

    def matrix(self, title: str) -> dict[str, list[str]]:
        """The table printed after the line containing `title`: {row: cells}."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if title in line)
        header = lines[start + 1].split()
        assert header[:3] == ["from", "\\", "to"], lines[start + 1]
        rows = [line.split() for line in lines[start + 2 : start + 6]]
        return {r[0]: r[1:] for r in rows}


def left_of(directory: Path) -> list[str]:
    """Everything of the cluster that lived in `directory` still on the machine."""
    layout = Layout(directory)
    found = [f"dir {directory}"] if directory.exists() else []
    found += [f"netns {n}" for n in list_netns(layout.prefix)]
    found += [f"mount {m}" for m in leftovers.mounts_under(directory)]
    for pid, args in leftovers.iter_processes():
        if pid != os.getpid() and any(str(directory) in a for a in args):
            found.append(f"process {pid} {' '.join(args)[:120]}")
    found += [
        f"cgroup {h / layout.prefix}" for h in leftovers.cgroup_hierarchies() if (h / layout.prefix).exists()
    ]
    return found


@pytest.fixture(scope="module")
def demo() -> Iterator[Run]:
    """One `bash hack/demo.sh` for the module; its cluster is brought down here too should it be left."""
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
        cwd="/",
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    yield run
    if run.directory.exists():
        subprocess.run([MNP, "local", "down", "--dir", str(run.directory)], capture_output=True, check=False)


def test_the_demo_succeeds_and_says_so(demo: Run) -> None:
    assert demo.code == 0, f"{demo.out}\n{demo.err}"
    assert "OK: the enforced matrix is exactly what the policy allows" in demo.out


def test_before_any_policy_every_pod_reaches_every_other_pod(demo: Run) -> None:
    assert demo.matrix("before any policy") == BEFORE, demo.out


def test_with_the_policy_the_matrix_is_what_the_policy_allows_and_the_changes_are_marked(demo: Run) -> None:
    assert demo.matrix("with the policy") == AFTER, demo.out
    assert "* changed (4)" in demo.out


def test_the_rulesets_the_policies_and_a_pods_nft_table_are_shown(demo: Run) -> None:
    out = demo.out
    pnr = out[out.index("$ kubectl get pnr -A") : out.index("$ kubectl get multi-policy -A")]
    assert re.search(r"NAMESPACE\s+NAME\s+NODE\s+POLICIES", pnr), pnr
    assert re.search(r"shop\s+backend\s+node-1\s.*True", pnr) and re.search(
        r"shop\s+db\s+node-2\s.*True", pnr
    )
    policies = out[out.index("$ kubectl get multi-policy -A") : out.index("$ nft list table")]
    assert re.search(r"NAME\s+ACCEPTED\s+ENFORCED", policies), policies
    for name in ("backend", "db"):
        assert re.search(rf"shop\s+{name}\s+True\s+True\s+1\s", policies), policies
    table = out[out.index("$ nft list table inet mnp") :]
    assert "table inet mnp {" in table and 'iifname "net1"' in table, table


def test_progress_lines_carry_the_seconds_since_the_start(demo: Run) -> None:
    stamped = [line for line in demo.out.splitlines() if re.match(r"\[\s*\d+\.\ds\] ", line)]
    assert any("cluster: waiting for the nodes to be Ready" in line for line in stamped)
    assert re.search(r"\d+\.\ds in all: cluster up \d+\.\ds, app running", stamped[-1]), stamped[-1]


def test_nothing_of_the_demo_cluster_is_left(demo: Run) -> None:
    assert "torn down:" in demo.out
    assert left_of(demo.directory) == []


def test_sigterm_in_the_middle_tears_the_cluster_down_even_with_keep() -> None:
    proc = subprocess.Popen(
        [MNP, "demo", "--keep"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    try:
        for line in proc.stdout:
            lines.append(line)
            if "waiting for the pods" in line:  # the cluster and the app's pods exist
                proc.send_signal(signal.SIGTERM)
                break
            assert time.monotonic() < deadline, "".join(lines)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = Run(proc.returncode, "".join(lines) + out, err)
    try:
        assert run.code == 128 + signal.SIGTERM, f"{run.out}\n{run.err}"
        assert "interrupted (SIGTERM)" in run.out and "torn down:" in run.out, run.out
        assert "keeps running" not in run.out
        assert left_of(run.directory) == []
    finally:
        if run.directory.exists():
            subprocess.run(
                [MNP, "local", "down", "--dir", str(run.directory)], capture_output=True, check=False
            )
