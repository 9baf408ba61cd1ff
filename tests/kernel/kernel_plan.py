"""Address plan and name helpers shared by the kernel tests (imported as `kernel_plan`).

Addresses follow tests/conftest.py: network A is 192.0.2.0/24 + 2001:db8:a::/64, network B is
198.51.100.0/24 + 2001:db8:b::/64. Names carry a `mnpt<pid>...` prefix so runs can overlap.
"""

from __future__ import annotations

import itertools
import os

from mnp.local.nodes.fabric import Attachment
from mnp.local.nodes.netns import list_netns

_module_counter = itertools.count()

NET_A = "default/net-a"
NET_B = "default/net-b"


def module_prefix() -> str:
    """Like `unique_prefix`, for fixtures shared by a module (unique_prefix is per test)."""
    return f"mnpt{os.getpid() % 100000}m{next(_module_counter)}"


def leftover_netns(prefix: str) -> list[str]:
    return [n for n in list_netns(prefix) if n == prefix or n.startswith(prefix + "-")]


def assert_no_netns(prefix: str) -> None:
    left = leftover_netns(prefix)
    assert not left, f"netns left behind: {left}"


def a4(host: int) -> str:
    """Address `host` on network A, IPv4 (192.0.2.0/24)."""
    return f"192.0.2.{host}"


def a6(host: int) -> str:
    """Address `host` on network A, IPv6 (2001:db8:a::/64), host written in hex as in the address."""
    return f"2001:db8:a::{host:x}"


def b4(host: int) -> str:
    return f"198.51.100.{host}"


def b6(host: int) -> str:
    return f"2001:db8:b::{host:x}"


def on_a(host: int, v4: bool = True, v6: bool = True, ifname: str = "net1") -> Attachment:
    addrs = ((f"{a4(host)}/24",) if v4 else ()) + ((f"{a6(host)}/64",) if v6 else ())
    return Attachment(NET_A, ifname, addrs)


def on_b(host: int, v4: bool = True, v6: bool = True, ifname: str = "net2") -> Attachment:
    addrs = ((f"{b4(host)}/24",) if v4 else ()) + ((f"{b6(host)}/64",) if v6 else ())
    return Attachment(NET_B, ifname, addrs)
