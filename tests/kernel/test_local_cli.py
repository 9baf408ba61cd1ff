"""`mnp local` as a user types it: up, apply, wait, get, exec, logs, status, down, all as processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import KUBECTL, LocalCluster

from mnp.local.layout import Layout

pytestmark = pytest.mark.kernel

MANIFEST = """
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: lan, namespace: demo}
spec:
  config: '{"cniVersion": "0.4.0", "type": "macvlan", "mode": "bridge", "master": "eth0",
            "capabilities": {"ips": true}, "ipam": {"type": "static"}}'
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: demo
  annotations: {k8s.v1.cni.cncf.io/networks: '[{"name": "lan", "ips": ["192.0.2.41/24"]}]'}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: b
  namespace: demo
  annotations: {k8s.v1.cni.cncf.io/networks: '[{"name": "lan", "ips": ["192.0.2.42/24"]}]'}
spec:
  containers: [{name: c, image: busybox, command: [sh, -c, "echo started on $(NODE); sleep 3600"],
                env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]}]
"""


def mnp(
    directory: Path, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnp", "local", args[0], "--dir", str(directory), *args[1:]],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def directory() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mnp-", dir="/tmp"))
    try:
        yield root
    finally:
        subprocess.run(
            [sys.executable, "-m", "mnp", "local", "down", "--dir", str(root)],
            capture_output=True,
            check=False,
        )
        left = LocalCluster(Layout.at(root)).leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left behind: {left}"


def test_up_apply_wait_exec_down_as_a_user_types_them(directory: Path, tmp_path: Path) -> None:
    up = mnp(directory, "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == str(directory / "api" / "kubeconfig")
    (tmp_path / "app.yaml").write_text(MANIFEST)
    applied = mnp(directory, "apply", "-f", str(tmp_path / "app.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert "pod/a serverside-applied" in applied.stdout
    waited = mnp(directory, "wait", "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    # wait returned: both pods must already run with their network attached.
    pods = json.loads(mnp(directory, "get", "pods", "-n", "demo", "-o", "json").stdout)["items"]
    assert {p["metadata"]["name"]: p["status"]["phase"] for p in pods} == {"a": "Running", "b": "Running"}
    assert all("k8s.v1.cni.cncf.io/network-status" in p["metadata"]["annotations"] for p in pods)

    ping = mnp(directory, "exec", "demo/a", "--", "ping", "-c1", "-W2", "192.0.2.42")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert mnp(directory, "exec", "demo/a", "--", "ping", "-c1", "-W1", "192.0.2.99").returncode == 1
    assert mnp(directory, "exec", "demo/a", "--", "sh", "-c", "exit 7").returncode == 7
    assert mnp(directory, "exec", "demo/a", "--", "cat", input="through stdin\n").stdout == "through stdin\n"
    node = next(p["spec"]["nodeName"] for p in pods if p["metadata"]["name"] == "b")
    assert mnp(directory, "logs", "demo/b").stdout == f"started on {node}\n"

    kubeconfig = mnp(directory, "kubeconfig").stdout.strip()
    wide = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "pods", "-n", "demo", "-o", "wide", "--no-headers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for p in pods:
        row = next(line.split() for line in wide.splitlines() if line.startswith(p["metadata"]["name"] + " "))
        assert row[5:7] == [p["status"]["podIP"], p["spec"]["nodeName"]]
    assert mnp(directory, "status").returncode == 0

    deleted = mnp(directory, "delete", "-f", str(tmp_path / "app.yaml"))
    assert deleted.returncode == 0, deleted.stderr
    assert (
        mnp(directory, "get", "pods", "-n", "demo", "-o", "json").returncode != 0
        or not json.loads(mnp(directory, "get", "pods", "-n", "demo", "-o", "json").stdout)["items"]
    )
    down = mnp(directory, "down")
    assert down.returncode == 0, down.stderr
    assert mnp(directory, "status").returncode != 0


def test_commands_without_a_cluster_say_what_to_do(directory: Path) -> None:
    for args in (("wait", "--timeout", "1"), ("get", "pods"), ("kubeconfig",)):
        out = mnp(directory, *args)
        assert out.returncode == 1 and "mnp local up" in out.stderr, (args, out.stderr)


README = Path(__file__).resolve().parents[2] / "README.md"


def _mnp_system_state(directory: Path) -> str:
    """mnp's own pods, their container statuses and the end of their logs: why a wait failed."""
    out = ["", "== mnp-system pods"]
    listed = mnp(directory, "get", "pods", "-n", "mnp-system", "-o", "json")
    for pod in json.loads(listed.stdout or '{"items": []}')["items"]:
        name = pod["metadata"]["name"]
        out.append(f"-- {name}: {json.dumps((pod.get('status') or {}).get('containerStatuses'))}")
        out.append(mnp(directory, "logs", f"mnp-system/{name}").stdout[-2000:])
        previous = mnp(directory, "logs", "-p", f"mnp-system/{name}")
        if previous.returncode == 0:
            out.append(f"-- {name}, previous run:\n{previous.stdout[-2000:]}")
    return "\n".join(out)


def readme_example() -> str:
    text = README.read_text()
    after = text.split("<!-- example.yaml:", 1)[1]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_is_enforced_by_the_controller_and_agents_deployed_by_up(
    directory: Path, tmp_path: Path
) -> None:
    assert mnp(directory, "up").returncode == 0
    (tmp_path / "example.yaml").write_text(readme_example())
    assert mnp(directory, "apply", "-f", str(tmp_path / "example.yaml")).returncode == 0
    waited = mnp(directory, "wait", "--timeout", "180", timeout=240)
    assert waited.returncode == 0, waited.stdout + waited.stderr[-3000:] + _mnp_system_state(directory)
    system = json.loads(mnp(directory, "get", "pods", "-n", "mnp-system", "-o", "json").stdout)["items"]
    names = sorted(p["metadata"]["name"] for p in system)
    assert [n.startswith("mnp-agent-") for n in names] == [True, True, False, False], names
    assert all(n.startswith("mnp-controller-") for n in names[2:]), names
    assert {p["status"]["phase"] for p in system} == {"Running"}
    rulesets = mnp(directory, "get", "pnr", "-A").stdout.splitlines()
    assert len(rulesets) == 2 and rulesets[1].split()[1] == "server" and "True" in rulesets[1].split()
    policies = mnp(directory, "get", "multi-policy", "-A").stdout.splitlines()
    assert policies[1].split()[2:5] == ["True", "True", "1"], policies
    allowed = mnp(
        directory, "exec", "demo/client", "--", "socat", "-T2", "-", "TCP:192.0.2.10:8080,connect-timeout=2"
    )
    denied = mnp(
        directory, "exec", "demo/other", "--", "socat", "-T2", "-", "TCP:192.0.2.10:8080,connect-timeout=2"
    )
    assert allowed.stdout.strip() == "hello" and denied.returncode != 0 and denied.stdout == ""
