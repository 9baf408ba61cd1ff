"""The node agent end to end on the local cluster: rulesets written by the test (compiled with `mnp
compile` from the live pods and a policy), agents as `mnp agent` processes, real TCP between pods.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_cluster import LocalCluster, local_cluster
from mnp_e2e import agent_args, nad

from mnp.local.nodes.containerd_config import load_settings
from mnp.local.nodes.cri import CriClient

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
ADDRESSES = {"srv": "192.0.2.31", "cli": "192.0.2.32", "other": "192.0.2.33"}
NAD = nad("lan")
NODES = {"srv": "node-1", "cli": "node-2", "other": "node-2"}


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": name},
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": json.dumps([{"name": "lan", "ips": [f"{ADDRESSES[name]}/24"]}])
            },
        },
        "spec": {
            "nodeName": NODES[name],
            "containers": [
                {
                    "name": "listen",
                    "image": "socat",
                    "command": ["socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo ok"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ],
        },
    }




def policy(allowed: list[str], name: str = "srv") -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "lan"},
        },
        "spec": {
            "podSelector": {"matchLabels": {"app": "srv"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": a}}} for a in allowed],
                    "ports": [{"port": "http"}],
                }
            ],
        },
    }


class Agents:
    """`mnp agent` processes, one per node, as the DaemonSet would run them."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, node: str, resync_period: float = 2.0) -> None:
        layout = self.cluster.layout
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ports[node] = s.getsockname()[1]
        log = open(layout.root / f"agent-{node}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[node] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnp",
                *agent_args(layout, node, resync_period),
                "--health-address",
                f"127.0.0.1:{self.ports[node]}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, node: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def stop(self) -> None:
        for node in list(self.procs):
            self.kill(node, signal.SIGTERM)

    def log(self, node: str) -> str:
        return (self.cluster.layout.root / f"agent-{node}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[LocalCluster, Agents]]:
    with local_cluster(nodes=2) as c:
        c.kubectl("apply", "-f", str(REPO / "crds"))
        c.apply(json.dumps(NAD))
        c.apply("\n---\n".join(json.dumps(_pod(n)) for n in ADDRESSES))
        c.wait_running(*ADDRESSES)
        agents = Agents(c)
        try:
            for node in ("node-1", "node-2"):
                agents.start(node)
            yield c, agents
        finally:
            agents.stop()


def compile_rulesets(c: LocalCluster, *policies: dict[str, Any]) -> str:
    """`mnp compile` of the live pods, namespaces and NADs plus `policies`: the rulesets as YAML."""
    live = c.kubectl("get", "pods,namespaces,network-attachment-definitions", "-A", "-o", "yaml").stdout
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "live.yaml").write_text(live)
        (Path(d) / "policy.yaml").write_text("\n---\n".join(json.dumps(p) for p in policies) or "{}")
        out = subprocess.run(
            [sys.executable, "-m", "mnp", "compile", "-f", d], capture_output=True, text=True, check=True
        )
    return out.stdout


def reaches(
    c: LocalCluster, src: str, dst: str = "srv", timeout: float = 2.0, netns: str | None = None
) -> bool:
    """Does a TCP connection from pod `src` to `dst`:8080 get the listener's answer?"""
    proc = subprocess.run(
        [
            "nsenter",
            f"--net={netns or c.netns_of(c.pod(src))}",
            "--",
            "socat",
            "-T",
            str(timeout),
            "-",
            f"TCP:{ADDRESSES[dst]}:8080,connect-timeout={timeout}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )
    return proc.stdout.strip() == "ok"


def applied(c: LocalCluster, name: str = "srv") -> dict[str, Any]:
    """Wait until the ruleset's status reports its current generation, then return it."""

    def current() -> bool:
        r = c.get("pnr", name)
        return r.get("status", {}).get("observedGeneration") == r["metadata"]["generation"]

    c.wait_for(f"ruleset {name} to be acted on", current)
    return c.get("pnr", name)


def condition(ruleset: dict[str, Any]) -> dict[str, Any]:
    return next(x for x in ruleset["status"]["conditions"] if x["type"] == "Applied")


def test_a_ruleset_is_enforced_updated_and_removed_with_status(env: tuple[LocalCluster, Agents]) -> None:
    c, _ = env
    assert reaches(c, "cli") and reaches(c, "other")
    c.apply(compile_rulesets(c, policy(["cli"])))
    r = applied(c)
    assert condition(r)["status"] == "True" and condition(r)["reason"] == "Applied"
    assert (
        r["status"]["appliedHash"].startswith("sha256:")
        and r["status"]["rules"] > 0
        and r["status"]["lastApplied"]
    )
    assert reaches(c, "cli") and not reaches(c, "other")
    row = c.kubectl("get", "pnr", "srv", "--no-headers").stdout.split()
    assert row[1] == "node-1" and row[3] == str(r["status"]["rules"]) and "True" in row

    c.apply(compile_rulesets(c, policy(["cli", "other"])))
    r2 = applied(c)
    assert r2["metadata"]["generation"] > r["metadata"]["generation"]
    assert r2["status"]["appliedHash"] != r["status"]["appliedHash"]
    assert reaches(c, "cli") and reaches(c, "other")

    c.kubectl("delete", "pnr", "srv")
    c.wait_for("the table to be removed", lambda: reaches(c, "other"))
    netns = c.netns_of(c.pod("srv"))
    listed = subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "list", "tables"], capture_output=True, text=True
    )
    assert "mnp" not in listed.stdout


def _drift_events(c: LocalCluster) -> int:
    out = c.kubectl("get", "events", "--field-selector", "involvedObject.name=srv", "-o", "json").stdout
    return sum(int(e.get("count") or 1) for e in json.loads(out)["items"] if e["reason"] == "DriftRepaired")


def test_drift_is_repaired_within_the_resync_period_with_an_event(env: tuple[LocalCluster, Agents]) -> None:
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    assert not reaches(c, "other")
    before = _drift_events(c)
    netns = c.netns_of(c.pod("srv"))
    subprocess.run(["nsenter", f"--net={netns}", "nft", "flush", "table", "inet", "mnp"], check=True)
    # The repair may come before a probe could see the hole (resync is 2 s here): the Event tells.
    c.wait_for("the drift to be repaired", lambda: _drift_events(c) > before, timeout=30)
    assert not reaches(c, "other") and reaches(c, "cli")
    c.kubectl("delete", "pnr", "srv")


def test_an_invalid_ruleset_is_refused_and_the_last_valid_table_stays(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    good = applied(c)
    bad = {key: good[key] for key in ("apiVersion", "kind", "spec")}
    bad["metadata"] = {
        key: good["metadata"][key] for key in ("name", "namespace", "labels", "ownerReferences")
    }
    # Passes the CRD schema (no CEL there), not the agent's own validation: a range that ends first.
    bad["spec"]["ingress"]["rules"][0]["ports"] = [{"protocol": "TCP", "port": 9000, "endPort": 8000}]
    c.kubectl("apply", "-f", "-", input=json.dumps(bad))
    r = applied(c)
    assert condition(r)["status"] == "False" and condition(r)["reason"] == "InvalidRuleset"
    assert "spec.ingress.rules[0].ports[0]" in condition(r)["message"]
    assert "still enforcing" in condition(r)["message"]
    assert r["status"]["appliedHash"] == good["status"]["appliedHash"]
    assert reaches(c, "cli") and not reaches(c, "other")
    c.kubectl("delete", "pnr", "srv")


def test_an_invalid_first_ruleset_isolates_the_pod_instead_of_leaving_it_open(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, _ = env
    rulesets = yaml.safe_load(compile_rulesets(c, policy(["cli"])))
    srv = next(i for i in rulesets["items"] if i["metadata"]["name"] == "srv")
    srv["spec"]["ingress"]["rules"][0]["ports"] = [{"protocol": "TCP", "port": 9000, "endPort": 8000}]
    c.apply(json.dumps(srv))
    r = applied(c)
    assert condition(r)["reason"] == "InvalidRuleset" and "isolation only" in condition(r)["message"]
    assert not reaches(c, "cli") and not reaches(c, "other")
    c.kubectl("delete", "pnr", "srv")
    c.wait_for("the pod to be open again", lambda: reaches(c, "other"))


def test_a_ruleset_for_another_pod_uid_is_not_applied(env: tuple[LocalCluster, Agents]) -> None:
    c, _ = env
    rulesets = yaml.safe_load(compile_rulesets(c, policy(["cli"])))
    srv = next(i for i in rulesets["items"] if i["metadata"]["name"] == "srv")
    srv["spec"]["podUID"] = "00000000-0000-0000-0000-000000000000"
    c.apply(json.dumps(srv))
    r = applied(c)
    assert condition(r)["reason"] == "PodMismatch" and "has uid" in condition(r)["message"]
    assert reaches(c, "other")
    c.kubectl("delete", "pnr", "srv")


def test_an_agent_killed_mid_burst_restarts_without_ever_opening_a_denied_flow(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, agents = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    passed: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            if reaches(c, "other", timeout=0.5):
                passed.append(time.monotonic())

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for i in range(
            6
        ):  # a burst of updates (cli only <-> cli + a no-op label), agent killed in the middle
            c.apply(compile_rulesets(c, policy(["cli"], name=f"srv-{i % 2}")))
            if i == 2:
                agents.kill("node-1")
                agents.start("node-1")
        r = applied(c)
        c.wait_for(
            "the restarted agent to report Applied",
            lambda: condition(c.get("pnr", "srv"))["status"] == "True",
        )
    finally:
        stop.set()
        prober.join()
    assert not passed, f"a denied flow passed {len(passed)} times during the restart"
    assert reaches(c, "cli") and not reaches(c, "other")
    assert condition(r)["status"] == "True"
    c.kubectl("delete", "pnr", "srv")


def _base_chain_handles(c: LocalCluster, pod: str) -> str:
    netns = c.netns_of(c.pod(pod))
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "-a", "list", "table", "inet", "mnp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if line.strip().startswith("chain "))


def _restart(agents: Agents, c: LocalCluster, node: str) -> None:
    agents.kill(node)
    before = agents.log(node).count("first sync of every ruleset and pod done")
    agents.start(node)
    c.wait_for(
        "the restarted agent's first sync",
        lambda: agents.log(node).count("first sync of every ruleset and pod done") > before,
    )


def test_an_agent_restart_rewrites_nothing_that_is_already_right(env: tuple[LocalCluster, Agents]) -> None:
    c, agents = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    r = applied(c)
    handles = _base_chain_handles(c, "srv")
    _restart(agents, c, "node-1")
    after = c.get("pnr", "srv")
    assert after["status"]["lastApplied"] == r["status"]["lastApplied"]
    assert _base_chain_handles(c, "srv") == handles, "the table was rewritten"
    assert "table applied" not in agents.log("node-1").rsplit("agent starting", 1)[-1]
    assert reaches(c, "cli") and not reaches(c, "other")
    c.kubectl("delete", "pnr", "srv")


def test_a_table_whose_ruleset_went_while_the_agent_was_down_is_removed_at_start(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, agents = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    agents.kill("node-1")
    try:
        c.kubectl("delete", "pnr", "srv")
        assert not reaches(c, "other"), "nobody removes the table while the agent is down"
    finally:
        agents.start("node-1")
    c.wait_for("the stale table to be removed", lambda: reaches(c, "other"))


def test_the_agent_serves_health_readiness_and_metrics(env: tuple[LocalCluster, Agents]) -> None:
    c, agents = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    base = f"http://127.0.0.1:{agents.ports['node-1']}"
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(base + path, timeout=5) as answer:
            assert answer.status == 200, path
    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert 'mnp_agent_applies_total{result="success"}' in text
    assert "mnp_agent_apply_seconds_bucket" in text and "mnp_agent_rulesets 1.0" in text
    c.kubectl("delete", "pnr", "srv")


def _metric(agents: Agents, node: str, sample: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agents.ports[node]}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{sample} not in the metrics of the agent on {node}")


AHEAD = 'mnp_agent_netns_lookups_total{when="ahead"}'
ON_DEMAND = 'mnp_agent_netns_lookups_total{when="on-demand"}'


def test_a_first_ruleset_is_applied_without_asking_the_runtime_on_its_way(
    env: tuple[LocalCluster, Agents],
) -> None:
    """The agent knows a running pod's netns before any ruleset (learnt when the pod changed, or kept
    when its last ruleset went): a new policy's rulesets then cost no runtime round trip each (a
    burst of them is no burst of CRI calls)."""
    c, agents = env
    c.kubectl("delete", "pnr", "--all")
    c.wait_for("no ruleset left", lambda: not c.kubectl("get", "pnr", "-o", "name").stdout.strip())
    c.wait_for("the table of srv to go", lambda: reaches(c, "other"))
    before = _metric(agents, "node-1", ON_DEMAND)
    c.apply(compile_rulesets(c, policy(["cli"])))
    assert condition(applied(c))["status"] == "True"
    assert _metric(agents, "node-1", ON_DEMAND) == before
    assert reaches(c, "cli") and not reaches(c, "other")
    # Drift checks (every 2 s here) find the netns file unchanged: no runtime lookups either.
    time.sleep(5)
    assert _metric(agents, "node-1", ON_DEMAND) == before
    c.kubectl("delete", "pnr", "srv")


def test_a_restarted_agent_is_ready_only_once_it_has_seen_every_running_pod_of_its_node(
    env: tuple[LocalCluster, Agents],
) -> None:
    """node-2 runs cli and other, without rulesets: /readyz answers only after both netns were learnt."""
    c, agents = env
    agents.kill("node-2", signal.SIGTERM)
    agents.start("node-2")
    url = f"http://127.0.0.1:{agents.ports['node-2']}/readyz"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    c.wait_for("the restarted agent on node-2 to be ready", ready)
    assert _metric(agents, "node-2", AHEAD) >= 2
    assert _metric(agents, "node-2", ON_DEMAND) == 0


def _last_apply(agents: Agents, node: str, pod: str = "default/srv") -> str:
    """How the agent's last apply to `pod` changed its table: "elements" or "swap"."""
    lines = [x for x in agents.log(node).splitlines() if "table applied" in x and f"pod={pod} " in x]
    assert lines, f"no apply to {pod} logged"
    return lines[-1].split(" transaction=", 1)[1].split()[0]


def test_peers_coming_and_going_change_only_the_map_elements(env: tuple[LocalCluster, Agents]) -> None:
    """A ruleset whose peers alone changed is applied as `delete element`/`add element` on the table
    the agent applied. After someone else committed in the pod's netns (here: an element added by
    hand that lets `other` in) it is a whole swap instead, which drops the foreign element. The
    agent runs with a long resync period, so no drift check repairs the table in between."""
    c, agents = env
    agents.kill("node-1", signal.SIGTERM)
    agents.start("node-1", resync_period=3600)
    try:
        c.apply(compile_rulesets(c, policy(["cli"])))
        applied(c)
        assert reaches(c, "cli") and not reaches(c, "other")
        c.apply(compile_rulesets(c, policy(["cli", "other"])))
        assert condition(applied(c))["status"] == "True"
        assert _last_apply(agents, "node-1") == "elements"
        assert reaches(c, "other") and reaches(c, "cli")
        c.apply(compile_rulesets(c, policy(["cli"])))
        assert applied(c)["status"]["elements"] == 1
        assert _last_apply(agents, "node-1") == "elements"
        assert reaches(c, "cli") and not reaches(c, "other")

        netns = c.netns_of(c.pod("srv"))
        nft = ["nsenter", f"--net={netns}", "nft"]
        listing = subprocess.run(
            [*nft, "-j", "list", "table", "inet", "mnp"], capture_output=True, text=True, check=True
        )
        (vmap,) = [o["map"] for o in json.loads(listing.stdout)["nftables"] if "map" in o]
        ((address, verdict),) = vmap["elem"]
        assert address == ADDRESSES["cli"]
        element = f"{{ {ADDRESSES['other']} : jump {verdict['jump']['target']} }}"
        subprocess.run([*nft, "add", "element", "inet", "mnp", vmap["name"], element], check=True)
        assert reaches(c, "other")  # the hand-made element lets it in
        c.apply(compile_rulesets(c, policy(["cli", "srv"])))
        applied(c)
        assert _last_apply(agents, "node-1") == "swap"
        assert reaches(c, "cli") and not reaches(c, "other")
    finally:
        c.kubectl("delete", "pnr", "srv", "--ignore-not-found")
        agents.kill("node-1", signal.SIGTERM)
        agents.start("node-1")


def test_a_netns_learnt_ahead_that_has_gone_since_is_not_used(env: tuple[LocalCluster, Agents]) -> None:
    """The pod got a new sandbox after its netns was learnt (no pod change told the agent): the old
    netns file is gone, so the first ruleset asks the runtime and lands in the new sandbox's netns."""
    c, _ = env
    c.kubectl("delete", "pnr", "--all")
    c.wait_for("no ruleset left", lambda: not c.kubectl("get", "pnr", "-o", "name").stdout.strip())
    pod = c.pod("srv")
    uid = pod["metadata"]["uid"]
    socket_path = str(c.layout.node_dir("node-1") / "containerd.sock")
    runtime = load_settings(c.layout.node_dir("node-1"))
    assert runtime is not None
    with CriClient(socket_path) as cri:
        old = cri.find_sandbox(uid)
        assert old is not None
        new_id = cri.run_sandbox(
            "srv", "default", uid, {"app": "srv"}, {}, runtime.pod_cgroup(uid), attempt=1
        )
        try:
            new_netns = cri.sandbox_status(new_id).netns_path
            cri.stop_sandbox(old.id)
            assert not os.path.exists(old.netns_path)
            c.apply(compile_rulesets(c, policy(["cli"])))
            assert condition(applied(c))["status"] == "True"
            out = subprocess.run(
                ["nsenter", f"--net={new_netns}", "nft", "list", "tables"], capture_output=True, text=True
            )
            assert "inet mnp" in out.stdout
        finally:
            c.kubectl("delete", "pnr", "srv", "--ignore-not-found")
            cri.stop_sandbox(new_id)
            cri.remove_sandbox(new_id)
    c.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    c.apply(json.dumps(_pod("srv")))
    c.wait_running("srv")


def _fault(c: LocalCluster, **switches: Any) -> None:
    out = c.kubectl("create", "--raw", "/mnp-admin/faults", "-f", "-", input=json.dumps(switches)).stdout
    state = json.loads(out)  # the switches as the API server now has them: check they took
    if "watchGone" in switches:
        assert state["watchGone"] == switches["watchGone"], state
    if "failNext" in switches:
        assert state["failNext"], state


def test_enforcement_survives_api_faults_and_the_agent_catches_up(env: tuple[LocalCluster, Agents]) -> None:
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    try:
        _fault(c, dropWatches=True)
        _fault(c, watchGone=True)
        _fault(c, failNext={"count": 4, "code": 503, "pathPrefix": "/apis/mnp.dev"})
        assert reaches(c, "cli") and not reaches(c, "other")
        c.apply(compile_rulesets(c, policy(["cli", "other"])))
        r = applied(c)
        assert condition(r)["status"] == "True"
        assert reaches(c, "other")
    finally:
        _fault(c, reset=True)
    c.kubectl("delete", "pnr", "srv")


def test_enforcement_goes_on_while_the_api_server_is_down_and_catches_up_after(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    layout = c.layout
    port = yaml.safe_load(layout.kubeconfig.read_text())["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    cli, other = (c.netns_of(c.pod(n)) for n in ("cli", "other"))
    pid = int(layout.pid_file("apiserver").read_text())
    os.kill(pid, signal.SIGKILL)
    try:
        time.sleep(1)
        assert reaches(c, "cli", netns=cli) and not reaches(c, "other", netns=other), "enforcement stopped"
    finally:
        with open(layout.log_file("apiserver"), "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mnp",
                    "local",
                    "apiserver",
                    "--dir",
                    str(layout.api_dir),
                    "--address",
                    f"127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        layout.pid_file("apiserver").write_text(f"{proc.pid}\n")
    c.wait_for(
        "the API server to serve again", lambda: c.kubectl("get", "pnr", "srv", check=False).returncode == 0
    )
    c.apply(compile_rulesets(c, policy(["cli", "other"])))
    applied(c)
    c.wait_for("the update made after the restart to be enforced", lambda: reaches(c, "other"))
    c.kubectl("delete", "pnr", "srv")


def test_without_a_reachable_cri_socket_the_agent_finds_pods_through_procfs(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, agents = env
    agents.kill("node-1")
    layout = c.layout
    log_path = layout.root / "agent-node-1-procfs.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnp",
                "agent",
                "--hostname-override",
                "node-1",
                "--kubeconfig",
                str(layout.kubeconfig),
                "--container-runtime-endpoint",
                f"unix://{layout.root}/no-such.sock",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        c.apply(compile_rulesets(c, policy(["cli"])))
        r = applied(c)
        assert condition(r)["status"] == "True", condition(r)
        assert reaches(c, "cli") and not reaches(c, "other")
        assert "procfs" in log_path.read_text()
        c.kubectl("delete", "pnr", "srv")
        c.wait_for("the table to be removed", lambda: reaches(c, "other"))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        agents.start("node-1")


def test_a_pod_recreated_under_the_same_name_never_gets_the_old_pods_table(
    env: tuple[LocalCluster, Agents],
) -> None:
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    stale = applied(c)
    c.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    c.apply(json.dumps(_pod("srv")))
    c.wait_running("srv")
    # The old ruleset went with the old pod (ownerReference); a stale writer brings it back.
    leftover = {k: stale[k] for k in ("apiVersion", "kind", "spec")}
    leftover["metadata"] = {"name": "srv", "namespace": "default", "labels": stale["metadata"]["labels"]}
    c.apply(json.dumps(leftover))
    r = applied(c)
    assert condition(r)["reason"] == "PodMismatch"
    assert reaches(c, "other"), "the old pod's ruleset was applied to the new pod"
    c.kubectl("delete", "pnr", "srv")


def test_a_custom_rule_nft_refuses_stops_the_agent_at_start_naming_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "v4-ingress.rules"
    rules.write_text(
        "# allow the monitoring host\nip saddr 203.0.113.9 accept\nip saddr 10.0.0.0/8 bogus-keyword accept\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnp",
            "agent",
            "--hostname-override",
            "node-1",
            "--kubeconfig",
            str(tmp_path / "none"),
            "--custom-v4-ingress-rule-file",
            str(rules),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert f"{rules}:3: nft refuses the rule 'ip saddr 10.0.0.0/8 bogus-keyword accept'" in out.stderr
    assert "203.0.113.9" not in out.stderr


def test_a_new_sandbox_of_the_pod_gets_the_table_in_its_new_netns(env: tuple[LocalCluster, Agents]) -> None:
    """A sandbox re-created by the runtime (new netns, same pod uid): the agent finds it through CRI
    (the newest ready sandbox of the uid) at its next resync and enforces there; the old netns is
    let go. The local kubelet does not re-create sandboxes, so the test does what a kubelet would."""
    c, _ = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    pod = c.pod("srv")
    old_netns = c.netns_of(pod)
    socket_path = str(c.layout.node_dir("node-1") / "containerd.sock")
    with CriClient(socket_path) as cri:
        old = cri.find_sandbox(pod["metadata"]["uid"])
        assert old is not None
        runtime = load_settings(c.layout.node_dir("node-1"))
        assert runtime is not None
        new_id = cri.run_sandbox(
            "srv",
            "default",
            pod["metadata"]["uid"],
            {"app": "srv"},
            {},
            runtime.pod_cgroup(pod["metadata"]["uid"]),
            attempt=1,
        )
        try:
            new_netns = cri.sandbox_status(new_id).netns_path
            assert new_netns != old_netns
            cri.stop_sandbox(old.id)

            def enforced_in_new_netns() -> bool:
                out = subprocess.run(
                    ["nsenter", f"--net={new_netns}", "nft", "list", "tables"], capture_output=True, text=True
                )
                return "inet mnp" in out.stdout

            c.wait_for("the table in the new sandbox's netns", enforced_in_new_netns, timeout=30)
        finally:
            cri.stop_sandbox(new_id)
            cri.remove_sandbox(new_id)
    c.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    c.apply(json.dumps(_pod("srv")))
    c.wait_running("srv")


def test_a_pod_deleted_during_a_burst_of_updates_leaves_the_agent_working(
    env: tuple[LocalCluster, Agents],
) -> None:
    """The pod's netns vanishes while its ruleset keeps changing: errors are reported or the ruleset
    goes with its pod; the agent keeps enforcing the other pods and serves the next ruleset."""
    c, agents = env
    c.apply(compile_rulesets(c, policy(["cli"])))
    applied(c)
    deleter = threading.Thread(
        target=lambda: c.kubectl("delete", "pod", "srv", "--wait=true", "--timeout=60s")
    )
    deleter.start()
    try:
        for i in range(6):
            c.kubectl(
                "apply", "-f", "-", input=compile_rulesets(c, policy(["cli"], name=f"burst-{i}")), check=False
            )
    finally:
        deleter.join()
    assert agents.procs["node-1"].poll() is None, "the agent died"
    c.apply(json.dumps(_pod("srv")))
    c.wait_running("srv")
    c.apply(compile_rulesets(c, policy(["cli"])))
    r = applied(c)
    assert condition(r)["status"] == "True"
    assert reaches(c, "cli") and not reaches(c, "other")
    c.kubectl("delete", "pnr", "srv")


def test_hostile_rulesets_that_pass_a_lax_crd_are_refused_by_the_agent_with_status(
    env: tuple[LocalCluster, Agents],
) -> None:
    """The agent does not trust the CRD's schema: with a schema that lets anything through (an older
    or hand-edited CRD), nft syntax in names and values is still refused, field named, pod not opened.
    Runs last in this module: it loosens the CRD for good."""
    c, _ = env
    crd = yaml.safe_load((REPO / "crds" / "podnetworkrulesets.yaml").read_text())
    for version in crd["spec"]["versions"]:
        version["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    c.kubectl("apply", "-f", "-", input=json.dumps(crd))
    c.apply(compile_rulesets(c, policy(["cli"])))
    good = applied(c)
    hostile_values = [
        (
            "spec.ingress.isolated[0]",
            lambda s: s["ingress"].__setitem__("isolated", ['net1" ; flush ruleset ; "']),
        ),
        ("spec.policies[0]", lambda s: s.__setitem__("policies", ["default/x } ; flush ruleset"])),
        (
            "spec.ingress.rules[0].peers[0].cidr",
            lambda s: s["ingress"]["rules"][0].__setitem__("peers", [{"cidr": "10.0.0.0/8 } accept"}]),
        ),
        (
            "spec.ingress.rules[0].ports[0].port",
            lambda s: s["ingress"]["rules"][0].__setitem__(
                "ports", [{"protocol": "TCP", "port": "80 accept"}]
            ),
        ),
    ]
    for field, corrupt in hostile_values:
        bad = {key: copy.deepcopy(good[key]) for key in ("apiVersion", "kind", "spec")}
        bad["metadata"] = {k: good["metadata"][k] for k in ("name", "namespace", "labels", "ownerReferences")}
        corrupt(bad["spec"])
        c.kubectl("apply", "-f", "-", input=json.dumps(bad))
        r = applied(c)
        assert condition(r)["reason"] == "InvalidRuleset", (field, condition(r))
        assert field in condition(r)["message"], (field, condition(r)["message"])
        assert reaches(c, "cli") and not reaches(c, "other"), field
    c.kubectl("delete", "pnr", "srv")
