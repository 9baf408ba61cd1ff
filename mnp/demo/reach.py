"""Real connections between the demo's pods: a TCP connect from one pod's netns to another pod's server.

A connection counts when the server's answer (`ok`) comes back, so the handshake and data passed both
ways. Every connection runs at once; one that fails is tried once more with a longer timeout, so a
server still starting (or a slow, loaded machine) is not mistaken for a block.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mnp.local.nodes.netns import call_in_netns

FIRST_TIMEOUT_S = 1.0
RETRY_TIMEOUT_S = 2.5


@dataclass(frozen=True, slots=True)
class Attempt:
    """From pod `src` (its netns `netns`) to pod `dst` at address:port, over IP `family`."""

    src: str
    dst: str
    family: int
    netns: str
    address: str
    port: int


def connects(netns: str, address: str, port: int, timeout: float) -> bool:
    """True iff a TCP connection from `netns` to address:port is answered with `ok` within `timeout`."""

    def attempt() -> bool:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((address, port))
            data = b""
            while b"ok" not in data:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            return b"ok" in data

    try:
        return call_in_netns(netns, attempt)
    except OSError:  # refused, timed out, unreachable
        return False


def reach_all(attempts: Sequence[Attempt]) -> dict[tuple[str, str, int], bool]:
    """{(src, dst, family): connected?} for every attempt, all in parallel."""

    def run(a: Attempt) -> bool:
        return connects(a.netns, a.address, a.port, FIRST_TIMEOUT_S) or connects(
            a.netns, a.address, a.port, RETRY_TIMEOUT_S
        )

    if not attempts:
        return {}
    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        results = list(pool.map(run, attempts))
    return {(a.src, a.dst, a.family): ok for a, ok in zip(attempts, results, strict=True)}


def all_pairs(
    netns: Mapping[str, str], targets: Mapping[str, tuple[str, str, int]], families: Sequence[int] = (4, 6)
) -> list[Attempt]:
    """Every pod to every other pod: `netns` {pod: netns path}, `targets` {pod: (v4, v6, port)}."""
    out = []
    for src, path in netns.items():
        for dst, (v4, v6, port) in targets.items():
            if src != dst:
                out += [Attempt(src, dst, f, path, v4 if f == 4 else v6, port) for f in families]
    return out


__all__ = ["Attempt", "all_pairs", "connects", "reach_all"]
