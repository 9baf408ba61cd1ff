"""The program a local-cluster container starts as: set up its view of the node, then exec its command.

`python -m mnp.local.nodes.launch --status-fd N` reads a JSON `LaunchSpec` on stdin; joins the
container's cgroups, enters a private mount namespace with the volumes bound in, joins the pod netns,
changes to the working dir, sends stdout/stderr to the log file and execs argv with exactly the given
env. If anything fails before the exec, one JSON line {code, reason, message} goes to the status fd
(closed unread on a successful exec) and to the log, and the launcher exits with that code.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from mnp.local.nodes.leftovers import cgroup_hierarchies
from mnp.local.nodes.mounts import bind_mounts, ensure_path, enter_private_mount_namespace
from mnp.local.nodes.podspec import Mount

CLONE_NEWNET = 0x40000000


class LaunchExit(IntEnum):
    """Exit codes of a launch that never reached the command (126/127 as shells use them)."""

    CGROUP = 121
    MOUNT = 122
    NETNS = 123
    WORKING_DIR = 124
    SETUP = 125  # unreadable spec, log file cannot be opened
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


REASONS = {
    LaunchExit.CGROUP: "StartError",
    LaunchExit.MOUNT: "StartError",
    LaunchExit.NETNS: "StartError",
    LaunchExit.WORKING_DIR: "StartError",
    LaunchExit.SETUP: "StartError",
    LaunchExit.NOT_EXECUTABLE: "Error",
    LaunchExit.NOT_FOUND: "Error",
}


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    working_dir: str | None
    mounts: tuple[Mount, ...]
    netns: str | None  # a netns file path; None stays in the launcher's netns (hostNetwork)
    cgroup: str  # relative to every cgroup hierarchy's mount point
    log: str

    def to_json(self) -> str:
        raw = asdict(self)
        raw["mounts"] = [
            {"source": str(m.source), "target": m.target, "read_only": m.read_only} for m in self.mounts
        ]
        return json.dumps(raw)

    @staticmethod
    def from_json(text: str) -> LaunchSpec:
        raw: dict[str, Any] = json.loads(text)
        return LaunchSpec(
            argv=tuple(str(a) for a in raw["argv"]),
            env=tuple((str(k), str(v)) for k, v in raw["env"]),
            working_dir=raw.get("working_dir"),
            mounts=tuple(
                Mount(Path(m["source"]), str(m["target"]), bool(m["read_only"])) for m in raw["mounts"]
            ),
            netns=raw.get("netns"),
            cgroup=str(raw["cgroup"]),
            log=str(raw["log"]),
        )


class _Failed(Exception):
    def __init__(self, code: LaunchExit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m mnp.local.nodes.launch")
    parser.add_argument("--status-fd", type=int, required=True)
    status_fd = parser.parse_args(argv).status_fd
    os.set_inheritable(status_fd, False)  # closed by a successful exec: EOF tells the supervisor
    try:
        spec = _read_spec()
        _redirect_output(spec.log)
        launch(spec)
    except _Failed as e:
        _report(status_fd, e.code, e.message)
    except Exception as e:  # anything unforeseen is still a reason the supervisor can show
        _report(status_fd, LaunchExit.SETUP, f"{type(e).__name__}: {e}")


def launch(spec: LaunchSpec) -> NoReturn:
    """Everything after the log redirect, ending in the exec; raises _Failed if the exec is not reached."""
    _join_cgroups(spec.cgroup)
    # The netns first: its file lives on the host filesystem, which the container's mounts may cover
    # (an emptyDir at /tmp would hide a netns under /tmp).
    if spec.netns is not None:
        _join_netns(spec.netns)
    try:
        enter_private_mount_namespace()
        bind_mounts(spec.mounts)
    except Exception as e:
        raise _Failed(LaunchExit.MOUNT, str(e)) from e
    try:
        workdir = spec.working_dir or "/"
        os.chdir(ensure_path(workdir, directory=True) if not os.path.isdir(workdir) else workdir)
    except Exception as e:
        raise _Failed(LaunchExit.WORKING_DIR, f"working dir {spec.working_dir}: {e}") from e
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, which a shell would not expect.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    program = spec.argv[0]
    try:
        os.execvpe(program, list(spec.argv), dict(spec.env))
    except FileNotFoundError:
        raise _Failed(
            LaunchExit.NOT_FOUND, f'exec: "{program}": executable file not found in $PATH'
        ) from None
    except OSError as e:
        raise _Failed(LaunchExit.NOT_EXECUTABLE, f'exec: "{program}": {e.strerror}') from None


def _read_spec() -> LaunchSpec:
    try:
        spec = LaunchSpec.from_json(sys.stdin.buffer.read().decode())
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _Failed(LaunchExit.SETUP, f"unreadable launch spec: {e}") from e
    if not spec.argv:
        raise _Failed(LaunchExit.SETUP, "launch spec has no argv")
    return spec


def _redirect_output(log: str) -> None:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise _Failed(LaunchExit.SETUP, f"open log {log}: {e.strerror}") from e
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _join_cgroups(cgroup: str) -> None:
    rel = cgroup.strip("/")
    if not rel or ".." in rel.split("/"):
        raise _Failed(LaunchExit.CGROUP, f"{cgroup!r} is not a cgroup path")
    for hierarchy in cgroup_hierarchies():
        procs = hierarchy / rel / "cgroup.procs"
        try:
            procs.write_text(f"{os.getpid()}\n")
        except OSError as e:
            raise _Failed(LaunchExit.CGROUP, f"join cgroup {procs.parent}: {e.strerror}") from e


def _join_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _Failed(LaunchExit.NETNS, f"open netns {path}: {e.strerror}") from e
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise _Failed(LaunchExit.NETNS, f"setns {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def _report(status_fd: int, code: LaunchExit, message: str) -> NoReturn:
    line = json.dumps({"code": int(code), "reason": REASONS[code], "message": message}) + "\n"
    for fd in (status_fd, 2):
        with contextlib.suppress(OSError):
            os.write(fd, (line if fd == status_fd else f"mnp launch: {message}\n").encode())
    os._exit(int(code))


if __name__ == "__main__":
    main()
