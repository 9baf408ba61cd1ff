"""Finding a pod's netns: /proc read from a fake tree, CRI through a fake client at the Protocol seam.

The fake /proc has what the finder reads: <pid>/cgroup, <pid>/stat (start time) and <pid>/ns/net, a
symlink to a plain file standing for the namespace. The real kernel and containerd are in
tests/kernel/test_agent_netns.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnp.agent.netns import (
    CriFinder,
    FinderError,
    NetnsFinder,
    NetnsSource,
    ProcfsFinder,
    Sandbox,
    pod_uid_of_cgroup,
    socket_path,
)
from mnp.api.errors import InvalidInput, MnpError, NetnsError

UID_A = "0b3c5f2e-1d2a-4c8e-9f00-6a1b2c3d4e5f"
UID_B = "7d9e8f7a-6b5c-4d3e-8f21-0a9b8c7d6e5f"


def add_process(proc: Path, pid: int, cgroup: str | list[str], start: int, netns: Path | None) -> None:
    d = proc / str(pid)
    (d / "ns").mkdir(parents=True)
    lines = [cgroup] if isinstance(cgroup, str) else cgroup
    (d / "cgroup").write_text("".join(f"{line}\n" for line in lines))
    fields = ["S", "1", "1", "1", "0", "-1", "4194304"] + ["0"] * 12 + [str(start), "1000", "100"]
    (d / "stat").write_text(f"{pid} (sleep) {' '.join(fields)}\n")
    if netns is not None:
        netns.touch()
        (d / "ns" / "net").symlink_to(netns)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "self").mkdir()  # not a pid: passed over
    return tmp_path / "proc"


@pytest.mark.parametrize(
    ("path", "uid"),
    [
        (f"/kubepods/besteffort/pod{UID_A}/0123abcd", UID_A),
        (f"/kubepods/burstable/pod{UID_A}", UID_A),
        (f"/kubepods/pod{UID_A}/0123abcd", UID_A),
        (f"/mnp-abc/node-1/pod{UID_A}/c", UID_A),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_A.replace('-', '_')}.slice/cri-containerd-0123.scope",
            UID_A,
        ),
        (f"/kubepods.slice/kubepods-pod{UID_A.replace('-', '_')}.slice", UID_A),
        ("/kubepods/besteffort/pod8f14e45fceea167a5a36dedd4bea2543/abc", "8f14e45fceea167a5a36dedd4bea2543"),
        ("/kubepods/besteffort", None),
        ("/kubepods.slice/kubepods-besteffort.slice", None),
        ("/system.slice/containerd.service", None),
        (f"/user.slice/podman-pod{UID_A}x", None),
        (f"/x/podinfo/{UID_A}", None),
        ("/", None),
    ],
)
def test_the_pod_uid_is_read_from_cgroupfs_systemd_and_kubepods_cgroup_names(
    path: str, uid: str | None
) -> None:
    assert pod_uid_of_cgroup(path) == uid


def test_the_oldest_process_of_the_pod_gives_its_netns_not_a_container_process(
    proc: Path, tmp_path: Path
) -> None:
    # The container process has the lower pid (pids wrap) but started later than the sandbox's pause.
    add_process(proc, 900, f"0::/kubepods/besteffort/pod{UID_A}/sandbox", 5000, tmp_path / "netns-a")
    add_process(proc, 120, f"0::/kubepods/besteffort/pod{UID_A}/c", 7000, tmp_path / "other")
    add_process(proc, 1, "0::/init.scope", 1, tmp_path / "host")
    ref = ProcfsFinder(str(proc)).find(UID_A)
    assert ref is not None
    assert ref.path == f"{proc}/900/ns/net" and ref.source is NetnsSource.PROCFS
    st = os.stat(tmp_path / "netns-a")
    assert ref.identity == (st.st_dev, st.st_ino) == (ref.dev, ref.inode)


def test_a_pod_whose_oldest_process_exited_is_found_through_the_next_oldest(
    proc: Path, tmp_path: Path
) -> None:
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 100, None)  # a zombie: no ns/net to stat
    add_process(proc, 11, f"0::/k/pod{UID_A}/c", 200, tmp_path / "netns-a")
    ref = ProcfsFinder(str(proc)).find(UID_A)
    assert ref is not None and ref.path == f"{proc}/11/ns/net"


def test_a_uid_that_is_only_a_prefix_of_a_pods_uid_finds_nothing(proc: Path, tmp_path: Path) -> None:
    add_process(proc, 10, f"0::/kubepods/pod{UID_A}/pause", 100, tmp_path / "netns-a")
    assert ProcfsFinder(str(proc)).find(UID_A[:8]) is None
    assert ProcfsFinder(str(proc)).find(UID_A[:-1]) is None


def test_cgroup_v1_lines_and_systemd_slices_find_the_pod(proc: Path, tmp_path: Path) -> None:
    systemd_b = f"kubepods-burstable-pod{UID_B.replace('-', '_')}.slice"
    add_process(
        proc,
        10,
        [
            "12:pids:/",
            f"4:memory:/kubepods/besteffort/pod{UID_A}/abc",
            f"1:name=systemd:/kubepods/besteffort/pod{UID_A}/abc",
        ],
        100,
        tmp_path / "netns-a",
    )
    add_process(
        proc,
        20,
        f"0::/kubepods.slice/kubepods-burstable.slice/{systemd_b}/cri-containerd-1.scope",
        50,
        tmp_path / "netns-b",
    )
    found = ProcfsFinder(str(proc)).find_many([UID_A, UID_B, "not-a-pod-here"])
    assert {uid: ref.path if ref else None for uid, ref in found.items()} == {
        UID_A: f"{proc}/10/ns/net",
        UID_B: f"{proc}/20/ns/net",
        "not-a-pod-here": None,
    }


def test_every_pods_processes_are_listed_oldest_first_from_one_pass(proc: Path, tmp_path: Path) -> None:
    add_process(proc, 30, f"0::/k/pod{UID_A}/c2", 300, tmp_path / "a")
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 100, tmp_path / "a")
    add_process(proc, 20, f"0::/k/pod{UID_B}/pause", 150, tmp_path / "b")
    add_process(proc, 5, "0::/system.slice/sshd.service", 1, tmp_path / "host")
    assert ProcfsFinder(str(proc)).pod_processes() == {UID_A: [10, 30], UID_B: [20]}
    assert ProcfsFinder(str(proc)).pod_processes({UID_B}) == {UID_B: [20]}


def test_a_command_name_with_spaces_and_parentheses_does_not_confuse_the_start_time(
    proc: Path, tmp_path: Path
) -> None:
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 500, tmp_path / "a")
    add_process(proc, 11, f"0::/k/pod{UID_A}/c", 100, tmp_path / "b")
    stat = (proc / "11" / "stat").read_text()
    (proc / "11" / "stat").write_text(stat.replace("(sleep)", "(a) b (c)"))
    ref = ProcfsFinder(str(proc)).find(UID_A)
    assert ref is not None and ref.path == f"{proc}/11/ns/net"


def test_the_host_prefix_is_put_before_proc(proc: Path, tmp_path: Path) -> None:
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 100, tmp_path / "a")
    finder = ProcfsFinder(host_prefix=str(tmp_path))
    ref = finder.find(UID_A)
    assert finder.proc == f"{tmp_path}/proc"
    assert ref is not None and ref.path == f"{tmp_path}/proc/10/ns/net"


def test_an_unreadable_proc_is_a_finder_error(tmp_path: Path) -> None:
    with pytest.raises(FinderError) as e:
        ProcfsFinder(str(tmp_path / "absent")).find(UID_A)
    assert isinstance(e.value, NetnsError) and "absent" in str(e.value)


# --- CRI, through a fake client at the SandboxLookup seam ------------------------------------------------


@dataclass(frozen=True)
class FakeSandbox:
    id: str
    netns_path: str


class FakeCri:
    """Answers from `sandboxes` (uid → sandbox); raises `fail` while it is set."""

    def __init__(self, sandboxes: dict[str, Sandbox], log: list[str]) -> None:
        self.sandboxes = sandboxes
        self.fail: MnpError | None = None
        self.log = log

    def find_sandbox(self, pod_uid: str) -> Sandbox | None:
        if self.fail is not None:
            raise self.fail
        return self.sandboxes.get(pod_uid)

    def close(self) -> None:
        self.log.append("close")


class FakeRuntime:
    def __init__(self, sandboxes: dict[str, Sandbox]) -> None:
        self.sandboxes = sandboxes
        self.log: list[str] = []
        self.clients: list[FakeCri] = []
        self.fail: MnpError | None = None

    def connect(self, path: str) -> FakeCri:
        self.log.append(f"connect {path}")
        client = FakeCri(self.sandboxes, self.log)
        client.fail = self.fail
        self.clients.append(client)
        return client


def test_cri_gives_the_sandbox_netns_under_the_host_prefix(tmp_path: Path) -> None:
    (tmp_path / "run" / "netns").mkdir(parents=True)
    (tmp_path / "run" / "netns" / "cni-1").touch()
    runtime = FakeRuntime({UID_A: FakeSandbox("s1", "/run/netns/cni-1")})
    finder = CriFinder("unix:///run/containerd/containerd.sock", str(tmp_path), connect=runtime.connect)
    ref = finder.find(UID_A)
    assert ref is not None and ref.path == f"{tmp_path}/run/netns/cni-1" and ref.source is NetnsSource.CRI
    assert ref.inode == os.stat(tmp_path / "run" / "netns" / "cni-1").st_ino
    assert finder.find(UID_B) is None
    assert runtime.log == ["connect /run/containerd/containerd.sock"], "one client for every call"


def test_a_cri_error_is_a_finder_error_and_the_next_call_reconnects(tmp_path: Path) -> None:
    (tmp_path / "ns").touch()
    runtime = FakeRuntime({UID_A: FakeSandbox("s1", str(tmp_path / "ns"))})
    finder = CriFinder("/sock", connect=runtime.connect)
    assert finder.find(UID_A) is not None
    runtime.clients[0].fail = MnpError("UNAVAILABLE")
    with pytest.raises(FinderError, match="CRI /sock: UNAVAILABLE"):
        finder.find(UID_A)
    assert finder.find(UID_A) is not None
    assert runtime.log == ["connect /sock", "close", "connect /sock"]


def test_a_netns_path_that_stays_missing_is_a_finder_error_and_a_removed_sandbox_is_none(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime({UID_A: FakeSandbox("s1", "/run/netns/cni-1")})
    finder = CriFinder("/sock", str(tmp_path / "wrong-prefix"), connect=runtime.connect)
    with pytest.raises(FinderError, match="wrong-prefix/run/netns/cni-1"):
        finder.find(UID_A)

    class Vanishing(FakeCri):
        def find_sandbox(self, pod_uid: str) -> Sandbox | None:
            found = super().find_sandbox(pod_uid)
            self.sandboxes = {}  # the sandbox is removed right after this answer
            return found

    gone = CriFinder("/sock", str(tmp_path), connect=lambda path: Vanishing(dict(runtime.sandboxes), []))
    assert gone.find(UID_A) is None


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("unix:///run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
        ("/x/cri.sock", "/x/cri.sock"),
    ],
)
def test_a_cri_endpoint_is_a_unix_socket_url_or_a_path(endpoint: str, path: str) -> None:
    assert socket_path(endpoint) == path


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1234", "npipe:////./pipe/containerd", "relative.sock"])
def test_a_cri_endpoint_that_is_no_unix_socket_is_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInput, match="container runtime endpoint"):
        socket_path(endpoint)


# --- NetnsFinder: CRI first, procfs as the fallback ------------------------------------------------------


@pytest.fixture
def two_sources(proc: Path, tmp_path: Path) -> tuple[FakeRuntime, NetnsFinder]:
    (tmp_path / "cri-ns").touch()
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 100, tmp_path / "proc-ns")
    add_process(proc, 20, f"0::/k/pod{UID_B}/pause", 100, tmp_path / "proc-ns-b")
    runtime = FakeRuntime({UID_A: FakeSandbox("s1", str(tmp_path / "cri-ns"))})
    return runtime, NetnsFinder(CriFinder("/sock", connect=runtime.connect), ProcfsFinder(str(proc)))


def test_cri_is_asked_first_and_its_none_is_not_second_guessed_by_procfs(
    two_sources: tuple[FakeRuntime, NetnsFinder],
) -> None:
    _, finder = two_sources
    found = finder.find_many([UID_A, UID_B])
    a = found[UID_A]
    assert a is not None and a.source is NetnsSource.CRI
    assert found[UID_B] is None, "a pod without a ready sandbox has no netns, whatever processes it left"


def test_procfs_serves_while_cri_fails_and_each_switch_is_logged_once(
    two_sources: tuple[FakeRuntime, NetnsFinder], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, finder = two_sources
    caplog.set_level(logging.INFO, logger="mnp.agent.netns")
    runtime.fail = MnpError("UNAVAILABLE")
    for _ in range(3):
        found = finder.find_many([UID_A, UID_B])
        assert {uid: ref.source if ref else None for uid, ref in found.items()} == {
            UID_A: NetnsSource.PROCFS,
            UID_B: NetnsSource.PROCFS,
        }
    runtime.fail = None
    ref = finder.find(UID_A)
    assert ref is not None and ref.source is NetnsSource.CRI
    assert [r.getMessage() for r in caplog.records] == [
        "CRI failed: finding pod netns through procfs",
        "CRI answers again: finding pod netns through CRI",
    ]
    assert runtime.log.count("connect /sock") == 4, "a reconnect per batch, not one per pod"


def test_without_cri_procfs_is_the_source(
    proc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_process(proc, 10, f"0::/k/pod{UID_A}/pause", 100, tmp_path / "proc-ns")
    caplog.set_level(logging.INFO, logger="mnp.agent.netns")
    finder = NetnsFinder(None, ProcfsFinder(str(proc)))
    ref = finder.find(UID_A)
    assert ref is not None and ref.source is NetnsSource.PROCFS
    assert [r.getMessage() for r in caplog.records] == [
        "no container runtime endpoint: finding pod netns through procfs"
    ]
