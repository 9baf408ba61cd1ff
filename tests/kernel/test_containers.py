"""Container processes of local-cluster pods on the real kernel: netns, env, mounts, restarts, stop.

Every container runs in a netns, cgroup and state dir named after the test's `unique_prefix`; the
`pods` fixture stops what a test started and then proves nothing is left: no process, no cgroup
dir, no mount and no path on the host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.local.layout import SERVICE_ACCOUNT_DIR
from mnp.local.nodes.containers import (
    ContainerStatus,
    PodProcesses,
    RestartPolicy,
    Running,
    Terminated,
    Waiting,
    kill_all_in_cgroup,
)
from mnp.local.nodes.leftovers import cgroup_hierarchies, cgroup_processes, mounts_under
from mnp.local.nodes.netns import create_netns, delete_netns, netns_path
from mnp.local.nodes.podspec import (
    ContainerSpec,
    InvalidContainer,
    Mount,
    PodContext,
    SourceCheck,
    SourceType,
    container_spec,
)

pytestmark = pytest.mark.kernel

PATH = (("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),)


def sh(name: str, script: str, *mounts: Mount, env: tuple[tuple[str, str], ...] = ()) -> ContainerSpec:
    return ContainerSpec(name, ("sh", "-c", script), PATH + env, None, mounts)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """check() once it is truthy; fails naming `what` if it never is (a hang, not a speed limit)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status(pod: PodProcesses, name: str = "c") -> ContainerStatus:
    return next(s for s in pod.statuses() if s.name == name)


def state_is(pod: PodProcesses, kind: type, name: str = "c") -> Callable[[], ContainerStatus | None]:
    def check() -> ContainerStatus | None:
        s = status(pod, name)
        return s if isinstance(s.state, kind) else None

    return check


def pid_of(cgroup: str) -> int:
    pids = wait_until(f"a process in cgroup {cgroup}", lambda: cgroup_processes(cgroup))
    return int(pids[0])


class Pods:
    """Starts PodProcesses for a test under its prefix; stops them and checks the host afterwards."""

    def __init__(self, prefix: str, tmp: Path) -> None:
        self.prefix = prefix
        self.tmp = tmp
        self.started: list[PodProcesses] = []
        self.changes = 0

    def cgroup(self, pod: str = "pod") -> str:
        return f"{self.prefix}/{pod}"

    def start(
        self,
        containers: list[ContainerSpec | InvalidContainer],
        *,
        netns: str | None,
        policy: RestartPolicy = "Never",
        pod: str = "pod",
    ) -> PodProcesses:
        def changed() -> None:
            self.changes += 1

        p = PodProcesses(
            f"ns/{pod}",
            containers,
            netns=netns,
            cgroup_parent=self.cgroup(pod),
            log_dir=self.tmp / "logs" / pod,
            restart_policy=policy,
            on_change=changed,
        )
        self.started.append(p)
        p.start()
        return p

    def log(self, container: str = "c", restart: int = 0, pod: str = "pod") -> str:
        path = self.tmp / "logs" / pod / container / f"{restart}.log"
        return path.read_text() if path.exists() else ""

    def stop_all(self) -> None:
        for p in self.started:
            p.stop(0.5)

    def assert_nothing_left(self) -> None:
        dirs = [h / self.prefix for h in cgroup_hierarchies() if (h / self.prefix).exists()]
        assert dirs == [], f"cgroup dirs left: {dirs}"
        assert mounts_under(self.tmp) == [], "mounts left under the test's dir"
        mine = [
            line
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if self.prefix in line or str(self.tmp) in line
        ]
        assert mine == [], f"mounts left on the host: {mine}"


@pytest.fixture
def pods(unique_prefix: str, tmp_path: Path) -> Iterator[Pods]:
    p = Pods(unique_prefix, tmp_path)
    try:
        yield p
    finally:
        try:
            p.stop_all()
        finally:
            # If a test or stop() broke, the cgroup tree (and every process in it) still goes.
            if any((h / unique_prefix).exists() for h in cgroup_hierarchies()):
                kill_all_in_cgroup(unique_prefix)
    p.assert_nothing_left()


@pytest.fixture
def pod_netns(unique_prefix: str) -> Iterator[str]:
    name = f"{unique_prefix}-pod"
    create_netns(name)
    try:
        yield netns_path(name)
    finally:
        delete_netns(name)


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_a_container_runs_in_the_pod_netns_and_its_cgroup_with_exactly_its_env(
    pods: Pods, pod_netns: str, tmp_path: Path
) -> None:
    pod = {
        "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1", "labels": {"app": "web"}},
        "spec": {
            "nodeName": "node-1",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "c",
                    "command": ["env"],
                    "env": [
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "WHO", "value": "$(POD) on $(KUBERNETES_SERVICE_HOST)"},
                    ],
                },
                {"name": "sleeper", "command": ["sleep", "30"]},
            ],
        },
    }
    ctx = PodContext(
        host_ips=("198.18.0.1",),
        pod_ips=("192.0.2.5",),
        host_path=lambda p: tmp_path / "hostpath" / p.lstrip("/"),
        empty_dir_root=tmp_path / "volumes",
        service_account_dir=tmp_path / "sa",
        extra_env=(("KUBERNETES_SERVICE_HOST", "192.0.2.1"),),
    )
    specs: list[ContainerSpec | InvalidContainer] = [container_spec(pod, n, ctx) for n in ("c", "sleeper")]
    p = pods.start(specs, netns=pod_netns)

    done = wait_until("env to finish", state_is(p, Terminated))
    assert (done.state.exit_code, done.state.reason) == (0, "Completed")
    env = dict(line.split("=", 1) for line in pods.log().splitlines())
    assert env == dict(specs[0].env)  # type: ignore[union-attr]
    assert env["WHO"] == "web on 192.0.2.1"
    assert (env["POD"], env["APP"], env["IP"]) == ("web", "web", "192.0.2.5")

    sleeper = pid_of(pods.cgroup() + "/sleeper")
    assert os.stat(f"/proc/{sleeper}/ns/net").st_ino == netns_inode(pod_netns)
    assert os.stat(f"/proc/{sleeper}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    assert isinstance(status(p, "sleeper").state, Running)
    assert status(p, "sleeper").container_id.startswith("containerd://")
    assert len(status(p, "sleeper").container_id) == len("containerd://") + 64


def test_a_host_network_container_stays_in_the_root_netns(pods: Pods) -> None:
    pods.start([sh("c", "sleep 30")], netns=None)
    pid = pid_of(pods.cgroup() + "/c")
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino


def test_volumes_appear_only_inside_the_container_even_where_the_host_has_no_such_path(
    pods: Pods, pod_netns: str, unique_prefix: str, tmp_path: Path
) -> None:
    rw, ro, sa = tmp_path / "rw", tmp_path / "ro", tmp_path / "sa"
    for d in (rw, ro, sa):
        d.mkdir()
    (ro / "data").write_text("read me\n")
    (sa / "token").write_text("the-token\n")
    sock_path = tmp_path / "runtime.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    missing = [
        f"/{unique_prefix}-rw",
        f"/opt/{unique_prefix}/ro",
        f"/run/{unique_prefix}/containerd.sock",
        "/var/run/secrets/kubernetes.io/serviceaccount",
    ]
    before = {m: os.path.lexists(m) for m in missing}
    assert not any(before[m] for m in missing[:3])
    script = f"""
        echo written > /{unique_prefix}-rw/out
        cat /opt/{unique_prefix}/ro/data
        touch /opt/{unique_prefix}/ro/new 2>/dev/null && echo ro-writable || echo ro-refused
        test -S /run/{unique_prefix}/containerd.sock && echo socket-bound
        cat {SERVICE_ACCOUNT_DIR}/token
        touch {SERVICE_ACCOUNT_DIR}/new 2>/dev/null && echo sa-writable || echo sa-refused
        test -d /run/netns && echo run-kept
    """
    try:
        p = pods.start(
            [
                sh(
                    "c",
                    script,
                    Mount(rw, missing[0], False),
                    Mount(ro, missing[1], True),
                    Mount(sock_path, missing[2], False),
                    Mount(sa, SERVICE_ACCOUNT_DIR, True),
                )
            ],
            netns=pod_netns,
        )
        done = wait_until("the script to finish", state_is(p, Terminated))
    finally:
        server.close()
    assert pods.log().split() == [
        "read",
        "me",
        "ro-refused",
        "socket-bound",
        "the-token",
        "sa-refused",
        "run-kept",
    ]
    assert done.state.exit_code == 0
    assert (rw / "out").read_text() == "written\n"
    assert not (ro / "new").exists()
    assert {m: os.path.lexists(m) for m in missing} == before


def test_a_netns_made_on_the_host_after_the_start_is_usable_inside(
    pods: Pods, pod_netns: str, unique_prefix: str, tmp_path: Path
) -> None:
    late = f"{unique_prefix}-late"
    sa = tmp_path / "sa"
    sa.mkdir()
    script = f"""
        while [ ! -e /run/netns/{late} ]; do sleep 0.02; done
        nsenter --net=/run/netns/{late} readlink /proc/self/ns/net
    """
    # The service-account mount puts a mimic over /run: its /run/netns is a copy that must still follow the host.
    p = pods.start([sh("c", script, Mount(sa, SERVICE_ACCOUNT_DIR, True))], netns=pod_netns)
    wait_until("the container to run", state_is(p, Running))
    try:
        path = create_netns(late)
        done = wait_until("the container to enter the late netns", state_is(p, Terminated))
        assert done.state.exit_code == 0, pods.log()
        assert pods.log().strip() == f"net:[{netns_inode(path)}]"
    finally:
        delete_netns(late)


def test_an_exiting_container_restarts_with_a_new_id_a_higher_count_and_a_new_log(pods: Pods) -> None:
    seen: dict[int, str] = {}

    p = pods.start([sh("c", "echo run; exit 3")], netns=None, policy="Always")

    def restarted_twice() -> bool:
        s = status(p)
        if s.container_id:
            seen[s.restart_count] = s.container_id
        return s.restart_count >= 2

    wait_until("two restarts", restarted_twice)
    assert len(set(seen.values())) == len(seen) >= 3
    s = wait_until("a back-off after the third run", lambda: restarted_twice() and state_is(p, Waiting)())
    assert s.state.reason == "CrashLoopBackOff"
    assert isinstance(s.last_state, Terminated)
    assert s.last_state.container_id == s.container_id == seen[s.restart_count]
    assert (s.last_state.exit_code, s.last_state.reason) == (3, "Error")
    assert [pods.log(restart=n) for n in range(3)] == ["run\n"] * 3
    assert pods.changes >= 6


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [
        ("OnFailure", 0, False),
        ("OnFailure", 1, True),
        ("Never", 1, False),
        ("Never", 0, False),
        ("Always", 0, True),
    ],
)
def test_restart_policy_decides_whether_an_exit_restarts(
    pods: Pods, policy: RestartPolicy, code: int, restarts: bool
) -> None:
    p = pods.start([sh("c", f"exit {code}")], netns=None, policy=policy)
    if restarts:
        s = wait_until("a restart", lambda: status(p).restart_count >= 1 and status(p))
        assert isinstance(s.last_state, Terminated) and s.last_state.exit_code == code
    else:
        # A final Terminated state is only ever set when the container will not restart.
        s = wait_until("the final state", state_is(p, Terminated))
        assert (s.state.exit_code, s.state.reason, s.restart_count) == (
            code,
            "Completed" if code == 0 else "Error",
            0,
        )


def test_a_missing_command_terminates_with_127_and_the_reason_then_backs_off(pods: Pods) -> None:
    p = pods.start(
        [ContainerSpec("c", ("mnpt-no-such-command",), PATH, None, ())], netns=None, policy="Always"
    )
    s = wait_until("a back-off", lambda: status(p).last_state is not None and status(p))
    assert isinstance(s.last_state, Terminated)
    assert (s.last_state.exit_code, s.last_state.reason) == (127, "Error")
    assert "mnpt-no-such-command" in s.last_state.message and "not found" in s.last_state.message
    assert "mnpt-no-such-command" in pods.log()
    assert s.to_raw()["lastState"]["terminated"]["exitCode"] == 127


def test_an_invalid_container_is_never_started_and_reports_a_config_error(pods: Pods) -> None:
    p = pods.start(
        [
            InvalidContainer("bad", "ns/pod: spec.containers[0].envFrom: envFrom is not supported"),
            sh("c", "sleep 30"),
        ],
        netns=None,
    )
    wait_until("the valid container to run", state_is(p, Running))
    bad = status(p, "bad")
    assert bad.state == Waiting(
        "CreateContainerConfigError", "ns/pod: spec.containers[0].envFrom: envFrom is not supported"
    )
    assert bad.to_raw()["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert not (pods.tmp / "logs" / "pod" / "bad").exists()


def test_a_host_path_that_must_exist_holds_the_start_back_until_it_does(pods: Pods, tmp_path: Path) -> None:
    source = tmp_path / "later"
    check = SourceCheck(source, SourceType.DIRECTORY, "spec.volumes[0].hostPath.path")
    p = pods.start([sh("c", "sleep 30", Mount(source, "/mnt", False, (check,)))], netns=None, policy="Always")
    s = wait_until(
        "the config error", lambda: status(p).state.reason == "CreateContainerConfigError" and status(p)
    )  # type: ignore[union-attr]
    assert "spec.volumes[0].hostPath.path" in s.state.message
    source.mkdir()
    wait_until("the start once the dir exists", state_is(p, Running))


def test_stop_kills_a_container_that_ignores_sigterm_after_the_grace_period(pods: Pods) -> None:
    stubborn = sh("c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    polite = sh("p", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
    p = pods.start([stubborn, polite], netns=None, policy="Always")
    wait_until("both to trap SIGTERM", lambda: pods.log("c") and pods.log("p"))
    p.stop(0.5)
    assert status(p, "c").state.exit_code == 137  # type: ignore[union-attr]
    assert status(p, "p").state.exit_code == 0  # type: ignore[union-attr]
    assert cgroup_processes(pods.cgroup()) == []


def test_children_of_a_container_go_with_it(pods: Pods) -> None:
    p = pods.start([sh("c", "sleep 300 & echo $! > /dev/stdout; sleep 0.2; exit 1")], netns=None)
    wait_until("the exit", state_is(p, Terminated))
    child = int(pods.log().strip())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_kill_all_in_cgroup_clears_a_pod_left_by_a_dead_kubelet(pods: Pods, unique_prefix: str) -> None:
    p = pods.start([sh("c", "sleep 300"), sh("d", "sleep 300")], netns=None)
    pids = {pid_of(pods.cgroup() + "/c"), pid_of(pods.cgroup() + "/d")}
    killed = kill_all_in_cgroup(pods.cgroup())
    assert pids <= set(killed)
    assert not [h for h in cgroup_hierarchies() if (h / pods.cgroup()).exists()]
    wait_until("the exits", lambda: all(isinstance(s.state, Terminated) for s in p.statuses()))


def test_processes_left_running_are_reaped_by_stop(pods: Pods) -> None:
    p = pods.start([sh("c", "exec sleep 300")], netns=None)
    pid = pid_of(pods.cgroup() + "/c")
    p.stop(2)
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_a_missing_working_dir_and_nested_mount_targets_are_made_inside_the_container(
    pods: Pods, unique_prefix: str, tmp_path: Path
) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    outer.mkdir()
    inner.mkdir()
    (inner / "f").write_text("inner\n")
    top = f"/{unique_prefix}-top"
    spec = ContainerSpec(
        "c",
        ("sh", "-c", "pwd; cat sub/deeper/f; ls"),
        PATH,
        f"{top}/work",
        (Mount(inner, f"{top}/work/sub/deeper", True), Mount(outer, f"{top}/work", False)),
    )
    p = pods.start([spec], netns=None)
    done = wait_until("the script", state_is(p, Terminated))
    assert done.state.exit_code == 0, pods.log()
    assert pods.log().split() == [f"{top}/work", "inner", "sub"]
    assert not os.path.lexists(top)
    # The mount point inside a writable volume is made in the volume, as runc does; not above it.
    assert (outer / "sub" / "deeper").is_dir() and list((outer / "sub" / "deeper").iterdir()) == []


def test_a_launch_that_fails_before_the_command_reports_a_start_error(pods: Pods, tmp_path: Path) -> None:
    spec = sh("c", "true", Mount(tmp_path / "absent", "/mnt", False))
    p = pods.start([spec], netns=None)
    s = wait_until("the failed start", state_is(p, Terminated))
    assert (s.state.reason, s.state.exit_code) == ("StartError", 122)
    assert str(tmp_path / "absent") in s.state.message
    assert s.state.started_at is None
    assert "startedAt" not in s.to_raw()["state"]["terminated"]


def test_a_command_that_is_not_executable_terminates_with_126(pods: Pods, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    p = pods.start([ContainerSpec("c", (str(script),), PATH, None, ())], netns=None)
    s = wait_until("the failed exec", state_is(p, Terminated))
    assert (s.state.exit_code, s.state.reason) == (126, "Error")
    assert "Permission denied" in s.state.message


def test_statuses_serialize_as_kubernetes_container_statuses(pods: Pods) -> None:
    p = pods.start([sh("c", "sleep 1; exit 2")], netns=None, policy="OnFailure", pod="raw")
    s = wait_until("a restart", lambda: status(p).restart_count >= 1 and state_is(p, Running)())
    raw = s.to_raw()
    assert set(raw) == {
        "name",
        "state",
        "lastState",
        "ready",
        "restartCount",
        "image",
        "imageID",
        "started",
        "containerID",
    }
    assert (raw["name"], raw["restartCount"], raw["ready"], raw["started"]) == ("c", 1, True, True)
    assert set(raw["state"]) == {"running"} and raw["state"]["running"]["startedAt"].endswith("Z")
    last = raw["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (2, "Error")
    assert set(last) == {"exitCode", "reason", "startedAt", "finishedAt", "containerID"}
    assert last["containerID"] != raw["containerID"]


def test_stop_leaves_a_shared_pod_cgroup_that_another_runtime_still_uses(pods: Pods) -> None:
    p = pods.start([sh("c", "sleep 30")], netns=None)
    pid_of(pods.cgroup() + "/c")
    sandbox = [h / pods.cgroup() / "sandbox" for h in cgroup_hierarchies()]
    for d in sandbox:
        d.mkdir()
    try:
        p.stop(0.5)
        assert all(d.is_dir() for d in sandbox)
        assert not any((h / pods.cgroup() / "c").exists() for h in cgroup_hierarchies())
    finally:
        for d in sandbox:
            d.rmdir()
    kill_all_in_cgroup(pods.prefix)  # the parents the pod made, now empty
