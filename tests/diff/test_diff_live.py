"""`mnp diff` as a process against a real `mnp local apiserver` with `mnp controller` running on it.

The module shares one API server (crds/ and the NAD CRD applied) and one controller process; each test
builds its own namespace (a NAD, three pods with Multus network-status, one live policy), waits until
the controller has written the rulesets, then runs `.venv/bin/mnp diff -f FILE --kubeconfig K` and
asserts on its exit status and output. No nodes: the pods are API objects only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnp.diff.compare import canonical_yaml
from tests.apiserver.conftest import (
    CRDS_DIR,
    ApiServer,
    Kubectl,
    free_port,
    running_apiserver,
    unique,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
MNP = Path(sys.executable).parent / "mnp"
NAD_CRD = REPO / "mnp" / "local" / "manifests" / "network-attachment-definitions.yaml"
CONVERGE_S = 20.0


@dataclass
class Cluster:
    server: ApiServer
    kubectl: Kubectl
    controller_log: Path

    def diff(
        self,
        *files: Path | str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        namespace: str = "",
    ) -> subprocess.CompletedProcess[str]:
        args = [str(MNP), "diff", *(a for f in files for a in ("-f", str(f)))]
        args += ["-n", namespace] if namespace else []
        args += ["--kubeconfig", str(kubeconfig or self.server.kubeconfig)]
        return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO)

    def ruleset(self, ns: str, name: str) -> dict[str, Any] | None:
        got = self.kubectl("get", "pnr", name, "-n", ns, "-o", "json", "--ignore-not-found")
        return json.loads(got.stdout) if got.stdout.strip() else None


@contextlib.contextmanager
def controller(server: ApiServer, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(MNP), "controller", "--kubeconfig", str(server.kubeconfig)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("diff-kubectl")
    with running_apiserver() as server:
        kubectl = Kubectl(server=server, home=home)
        kubectl("apply", "-f", str(CRDS_DIR), "-f", str(NAD_CRD))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")
        log = home / "controller.log"
        with controller(server, log) as proc:
            yield Cluster(server, kubectl, log)
            assert proc.poll() is None, f"the controller died:\n{log.read_text()[-3000:]}"


def network_pod(name: str, ns: str, app: str, ip: str) -> dict[str, Any]:
    status = [
        {"name": "cbr0", "interface": "eth0", "ips": ["10.244.0.9"], "default": True},
        {"name": f"{ns}/macvlan1", "interface": "net1", "ips": [ip], "mac": "02:00:00:00:00:01"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": app},
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": "macvlan1",
                "k8s.v1.cni.cncf.io/network-status": json.dumps(status),
            },
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": app, "image": "registry.invalid/app:1"}]},
    }


def db_policy(ns: str, port: int = 5432, peer: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {
            "name": "db",
            "namespace": ns,
            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "macvlan1"},
        },
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": peer}}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def web_policy(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {
            "name": "web",
            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "macvlan1"},
            "namespace": ns,
        },
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]},
    }


def write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def converged(cluster: Cluster, ns: str, want: dict[str, tuple[str, ...] | None]) -> None:
    """Wait until each pod's ruleset lists exactly these policies (None: has no ruleset)."""

    def done() -> bool:
        for pod, policies in want.items():
            found = cluster.ruleset(ns, pod)
            if (None if found is None else tuple(found["spec"]["policies"])) != policies:
                return False
        return True

    wait_until(done, CONVERGE_S, 0.1, f"controller to write the rulesets of {ns}: {want}")


@pytest.fixture
def app(cluster: Cluster, tmp_path: Path) -> str:
    """A namespace with a macvlan NAD, pods web, db and cache (Running), and the live policy db."""
    ns = unique("diff")
    k = cluster.kubectl
    k("create", "namespace", ns)
    config = {"cniVersion": "0.3.1", "name": "macvlan1", "type": "macvlan", "master": "eth0", "ipam": {}}
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "macvlan1", "namespace": ns},
        "spec": {"config": json.dumps(config)},
    }
    pods = [network_pod(name, ns, name, f"192.0.2.{10 + i}") for i, name in enumerate(("web", "db", "cache"))]
    k("apply", "-f", str(write(tmp_path / "live.yaml", nad, *pods, db_policy(ns))))
    for p in pods:
        k(
            "patch", "pod", p["metadata"]["name"], "-n", ns, "--subresource=status", "--type=merge",
            "-p", '{"status": {"phase": "Running"}}',
        )  # fmt: skip
    converged(cluster, ns, {"db": (f"{ns}/db",), "web": None, "cache": None})
    # The peer web is in db's ruleset only once web is Running: wait for that write too.
    wait_until(
        lambda: "192.0.2.10/32" in json.dumps(cluster.ruleset(ns, "db")), CONVERGE_S, 0.1, "peer web in db"
    )
    return ns


def test_the_live_policy_as_a_file_shows_nothing_and_exits_0(
    cluster: Cluster, app: str, tmp_path: Path
) -> None:
    result = cluster.diff(write(tmp_path / "same.yaml", db_policy(app)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_an_edited_policy_shows_the_changed_peer_and_port_lines(
    cluster: Cluster, app: str, tmp_path: Path
) -> None:
    result = cluster.diff(write(tmp_path / "edited.yaml", db_policy(app, port=5433, peer="cache")))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"--- live/{app}/db", f"+++ applied/{app}/db"]
    for expected in (
        "-      - cidr: 192.0.2.10/32",
        f"-        pod: {app}/web",
        "+      - cidr: 192.0.2.12/32",
        f"+        pod: {app}/cache",
        "-      - port: 5432",
        "+      - port: 5433",
    ):
        assert expected in lines, result.stdout
    assert "status" not in result.stdout and "resourceVersion" not in result.stdout


def test_a_new_policy_read_from_stdin_into_the_namespace_flag_shows_the_rulesets_it_adds(
    cluster: Cluster, app: str
) -> None:
    docs = [db_policy(app), web_policy(app)]
    for doc in docs:
        del doc["metadata"]["namespace"]
    result = cluster.diff("-", stdin=yaml.safe_dump_all(docs), namespace=app)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"--- /dev/null\n+++ applied/{app}/web\n@@ -0,0 +1,")
    assert f"+  - {app}/web\n" in result.stdout
    assert f"applied/{app}/db" not in result.stdout  # db's ruleset does not change


def test_an_unreachable_server_exits_2_and_says_what_to_check(cluster: Cluster, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.server.kubeconfig.read_text())
    port = free_port()
    for c in config["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    result = cluster.diff(write(tmp_path / "p.yaml", db_policy("default")), kubeconfig=dead)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot read the cluster at https://127.0.0.1:{port}: "), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1, result.stderr
    assert "check --kubeconfig" in result.stderr
    assert elapsed < 20, elapsed


def test_an_unreadable_file_exits_2_naming_it(cluster: Cluster, tmp_path: Path) -> None:
    result = cluster.diff(tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'missing.yaml'}: cannot read: No such file or directory\n"


def test_once_applied_and_converged_the_same_files_diff_to_nothing(
    cluster: Cluster, app: str, tmp_path: Path
) -> None:
    files = write(tmp_path / "change.yaml", db_policy(app, port=5433, peer="cache"), web_policy(app))
    before = cluster.diff(files)
    assert before.returncode == 1, before.stderr
    added = before.stdout.split(f"+++ applied/{app}/web\n", 1)[1].split("\n", 1)[1]
    predicted_web = "".join(line[1:] + "\n" for line in added.splitlines() if line.startswith("+"))

    cluster.kubectl("apply", "-f", str(files))
    converged(cluster, app, {"db": (f"{app}/db",), "web": (f"{app}/web",), "cache": None})
    wait_until(
        lambda: "5433" in json.dumps(cluster.ruleset(app, "db")), CONVERGE_S, 0.1, "db ruleset with port 5433"
    )

    after = cluster.diff(files)
    assert (after.returncode, after.stdout, after.stderr) == (0, "", "")
    # Byte for byte, the ruleset the controller wrote is the one the diff announced.
    web = cluster.ruleset(app, "web")
    assert web is not None
    assert canonical_yaml(web) == predicted_web
