"""Named network namespaces for the local cluster and kernel tests, and ways to act inside them.

Everything here works on namespaces under /run/netns (made like `ip netns add`) or on any netns file
path, and never changes the root namespace. Code runs inside a netns either as a process
(`nsenter --net=PATH`) or as a Python function on a short-lived thread that setns'd into it: a socket
opened there stays bound to that netns whichever thread uses it later.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mnp.api.errors import NetnsError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

# DESIGN §5: all secondary networks share one L2 segment, so a pod must answer ARP only for addresses
# of the interface the request came in on, and announce with an address of the outgoing interface.
# IPv6 DAD is off so static addresses are usable at once; the kernel skips DAD only if `all` AND the
# interface's value (inherited from `default` at creation) are below 1, hence both keys.
POD_SYSCTLS: Mapping[str, str] = {
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    """The path of the named netns (whether or not it exists)."""
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"{name!r} is not a netns name")
    return str(NETNS_DIR / name)


def resolve_netns(name_or_path: str) -> str:
    """A netns path from a name under /run/netns or from a path (anything containing '/')."""
    return name_or_path if "/" in name_or_path else netns_path(name_or_path)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def list_netns(prefix: str = "") -> list[str]:
    """Names under /run/netns starting with `prefix`, sorted."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def create_netns(name: str, *, lo_up: bool = True) -> str:
    """Create the named netns (an error if it exists) with lo up; returns its path."""
    path = netns_path(name)
    if os.path.exists(path):
        raise NetnsError(f"netns {name} already exists")
    _run(["ip", "netns", "add", name], f"create netns {name}")
    if lo_up:
        try:
            _run(["ip", "-n", name, "link", "set", "lo", "up"], f"set lo up in netns {name}")
        except NetnsError:
            delete_netns(name)
            raise
    return path


def delete_netns(name: str) -> None:
    """Delete the named netns; nothing happens if it does not exist.

    Links in it go with it (a macvlan is destroyed, a veth takes its peer along) unless something
    still holds the netns open: a process inside it or a socket opened there.
    """
    path = netns_path(name)
    if not os.path.exists(path):
        return
    proc = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and os.path.exists(path):
        raise NetnsError(f"delete netns {name}: {proc.stderr.strip()}")


def run_in_netns(path: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run(argv) inside the netns at `path` (or of that name), via nsenter."""
    return subprocess.run(["nsenter", f"--net={resolve_netns(path)}", "--", *argv], **kwargs)


def popen_in_netns(path: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen(argv) inside the netns at `path` (or of that name), via nsenter."""
    return subprocess.Popen(["nsenter", f"--net={resolve_netns(path)}", "--", *argv], **kwargs)


def call_in_netns(path: str, fn: Callable[[], T]) -> T:
    """fn() on a fresh thread that entered the netns at `path`; returns its result or raises its error.

    setns(CLONE_NEWNET) changes only the calling thread, so the thread is used once and discarded;
    sockets fn opens stay in that netns when the caller uses them afterwards.
    """
    target = resolve_netns(path)
    box: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            enter_netns(target)
            box.append(fn())
        except BaseException as e:  # handed to the caller's thread
            failure.append(e)

    thread = threading.Thread(target=body, name="netns-call", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def enter_netns(path: str) -> None:
    """setns(2) of the calling thread into the netns at `path`; NetnsError if it cannot be entered."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsError(f"open netns {path}: {e.strerror}") from e
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns {path}: {os.strerror(err) if err else 'failed'}")
    finally:
        os.close(fd)


def set_sysctls(path: str, values: Mapping[str, str | int]) -> None:
    """Write net.* sysctls inside the netns at `path` (or of that name): /proc/sys/net is per netns."""

    def write() -> None:
        for key, value in values.items():
            if not key.startswith("net.") or ".." in key or "/" in key:
                raise NetnsError(f"{key!r} is not a per-netns sysctl")
            file = Path("/proc/sys", *key.split("."))
            try:
                file.write_text(f"{value}\n")
            except OSError as e:
                raise NetnsError(f"sysctl {key}={value} in {path}: {e.strerror}") from e

    call_in_netns(path, write)


def get_sysctl(path: str, key: str) -> str:
    """Read a net.* sysctl inside the netns at `path` (or of that name)."""
    return call_in_netns(path, lambda: Path("/proc/sys", *key.split(".")).read_text().strip())


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"{what}: {proc.stderr.strip() or os.strerror(errno.EIO)}")


__all__ = [
    "NETNS_DIR",
    "POD_SYSCTLS",
    "call_in_netns",
    "create_netns",
    "delete_netns",
    "enter_netns",
    "get_sysctl",
    "list_netns",
    "netns_exists",
    "netns_path",
    "popen_in_netns",
    "resolve_netns",
    "run_in_netns",
    "set_sysctls",
]
