"""`mnp demo`: the whole product on a fresh local cluster, a sample app, and its connectivity matrix
before and after a MultiNetworkPolicy; then the rulesets, one pod's nft table, and tear-down.

The cluster runs mnp as a user would (`mnp.local.cluster.up(..., deploy=True)`: the controller and the
agents are pods). The demo is also a check: it exits 1 when the matrix with the policy is not what the
policy says (app.expected). The cluster is torn down on success, on error, on Ctrl-C and on SIGTERM,
unless `keep` (then it says how to use and remove it; a signal still tears it down).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

import yaml

from mnp.api.errors import MnpError
from mnp.demo import app, matrix
from mnp.demo.converged import not_enforced
from mnp.demo.reach import Attempt, reach_all
from mnp.local import cluster
from mnp.local.cli import cri_netns_lookup
from mnp.local.ctl.apply import apply_manifests
from mnp.local.ctl.kinds import MULTI_NETWORK_POLICY, POD
from mnp.local.ctl.kubeapi import KubeClusterApi
from mnp.local.ctl.manifests import Manifest
from mnp.local.ctl.wait import wait_converged
from mnp.local.layout import Layout

NODES = 2
WAIT_TIMEOUT_S = 180.0
TABLE = "mnp"  # the agent's --table-name default, which deploy/ keeps
SHOWN_POD = "db"  # whose nft table is printed


_LOOK_AROUND = (
    "to look around, rerun with `mnp demo --keep`: the cluster then stays up after a failure, with its "
    "components' logs in {logs}"
)


class DemoFailed(MnpError):
    """A step of the demo failed; the message says what to do next."""


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: stop, tear down, exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Clock:
    """Progress lines with the seconds since the start, and the duration of each phase."""

    out: TextIO
    start: float = field(default_factory=time.monotonic)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {message}", file=self.out, flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((name, time.monotonic() - began))

    def summary(self) -> str:
        parts = [f"{name} {seconds:.1f}s" for name, seconds in self.phases]
        return f"{time.monotonic() - self.start:.1f}s in all: " + ", ".join(parts)


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None  # None: a fresh one under /tmp, removed afterwards
    keep: bool = False


def kubectl_path() -> str:
    """kubectl next to this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else (shutil.which("kubectl") or "kubectl")


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """The demo from start to tear-down; 0 when the enforced matrix is what the policy allows."""
    if options.directory is not None:
        layout = Layout.at(options.directory)  # a path too long for containerd's sockets fails here
        made = not layout.root.exists()
        layout.root.mkdir(parents=True, exist_ok=True)
    else:
        layout, made = Layout.at(tempfile.mkdtemp(prefix="mnp-demo-", dir="/tmp")), True
    clock = Clock(out)
    # Also SIGINT: a parent (a non-interactive shell's background job) may have left it ignored.
    previous = {s: signal.signal(s, _raise_interrupted) for s in INTERRUPTS}
    keep = options.keep
    try:
        code = _demo(layout, clock)
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        clock.say(f"interrupted ({signal.Signals(signum).name}): tearing down")
        code, keep = 128 + signum, False
    except MnpError as e:
        clock.say(f"error: {e}")
        code = 1
    except Exception:  # a bug: its traceback, and still the tear-down below
        traceback.print_exc()
        clock.say("error: the demo crashed (traceback above)")
        code = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if keep:
        _tell_how_to_use(layout, out)
    else:
        _tear_down(layout, clock, remove_dir=made)
    clock.say(clock.summary())
    return code


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, where SIGINT or SIGTERM cancels the coroutine and then raises Interrupted.

    Raised from a plain signal handler, the exception would land anywhere inside the event loop, and
    a loop left half shut down can keep executor threads that stop the process from exiting."""
    got: list[int] = []

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def interrupt(signum: int) -> None:
            got.append(signum)
            task.cancel()

        for s in INTERRUPTS:
            loop.add_signal_handler(s, interrupt, s)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if got:
            raise Interrupted(got[0]) from None
        raise
    finally:
        for s in INTERRUPTS:  # closing the loop reset them to the defaults
            signal.signal(s, _raise_interrupted)


def _demo(layout: Layout, clock: Clock) -> int:
    clock.say(f"mnp demo: a {NODES}-node local cluster in {layout.root}")
    with clock.phase("cluster up"):
        cluster.up(layout, NODES, lambda m: _cluster_progress(clock, m), deploy=True)
    manifests = layout.root / "demo"
    manifests.mkdir(exist_ok=True)
    with clock.phase("app running"):
        clock.say(f"applying the app ({manifests / 'app.yaml'}): namespaces shop, ops; network {app.NETWORK}")
        _run(_apply(layout, clock, manifests / "app.yaml", app.app()))
        clock.say("waiting for the pods (and mnp's own controller and agents) to run")
        _run(_converge(layout, clock, policies=False))
        netns = _run(_pod_netns(layout))
    with clock.phase("matrix before"):
        before = _matrix(netns)
    print_matrix(clock, "Connectivity on shop/lan before any policy (TCP, IPv4 and IPv6):", before, None)
    wrong_before = matrix.differences(before, matrix.expected_cells(app.expected(policy=False)))

    with clock.phase("policy enforced"):
        clock.say(f"applying the MultiNetworkPolicies ({manifests / 'policy.yaml'})")
        _show_policy(clock)
        _run(_apply(layout, clock, manifests / "policy.yaml", app.policies()))
        clock.say("waiting until every ruleset is Applied and every policy Enforced")
        _run(_converge(layout, clock, policies=True))
    with clock.phase("matrix after"):
        after = _matrix(netns)
    print_matrix(clock, "Connectivity on shop/lan with the policy:", after, before)
    wrong_after = matrix.differences(after, matrix.expected_cells(app.expected(policy=True)))

    with clock.phase("listings"):
        kubeconfig = str(layout.kubeconfig)
        for args in (["get", "pnr", "-A"], ["get", "multi-policy", "-A"]):
            argv = [kubectl_path(), "--kubeconfig", kubeconfig, *args]
            _show_command(clock, argv, f"kubectl {' '.join(args)}")
        _show_command(
            clock,
            ["nsenter", f"--net={netns[SHOWN_POD]}", "--", "nft", "list", "table", "inet", TABLE],
            f"nft list table inet {TABLE}   # in the netns of pod shop/{SHOWN_POD}",
        )
    for title, wrong in (("before the policy", wrong_before), ("with the policy", wrong_after)):
        if wrong:
            clock.say(f"FAILED: the matrix {title} is not what it should be:")
            for line in wrong:
                print(f"    {line}", flush=True)
    if wrong_before or wrong_after:
        clock.say(_LOOK_AROUND.format(logs=layout.root / "logs"))
        return 1
    clock.say("OK: the enforced matrix is exactly what the policy allows")
    return 0


def _cluster_progress(clock: Clock, message: str) -> None:
    if not message.endswith(" serverside-applied"):  # one line per step, not one per object
        clock.say(f"cluster: {message}")


def print_matrix(
    clock: Clock, title: str, got: dict[tuple[str, str], str], before: dict[tuple[str, str], str] | None
) -> None:
    clock.say(title)
    names = [p.name for p in app.PODS]
    labels = {p.name: p.label for p in app.PODS}
    text = matrix.render(names, labels, got, before)
    print("\n".join(f"    {line}" for line in text.splitlines()), flush=True)


def _show_policy(clock: Clock) -> None:
    for name, sources in app.ACCEPTS.items():
        clock.say(f"  {name} accepts connections only from {' and '.join(sorted(sources))}")
    for name in sorted(app.NO_EGRESS):
        clock.say(f"  {name} opens no connection")


def _show_command(clock: Clock, argv: Sequence[str], shown: str) -> None:
    clock.say(f"$ {shown}")
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    text = (proc.stdout + proc.stderr).rstrip()
    print("\n".join(f"    {line}" for line in text.splitlines()), flush=True)
    if proc.returncode != 0:
        raise DemoFailed(f"{shown} failed with exit status {proc.returncode}")


def _matrix(netns: dict[str, str]) -> dict[tuple[str, str], str]:
    attempts = [
        Attempt(src.name, dst.name, family, netns[src.name], dst.address(family), dst.port)
        for src in app.PODS
        for dst in app.PODS
        if src != dst
        for family in (4, 6)
    ]
    return matrix.cells(reach_all(attempts))


async def _connected(layout: Layout, use: Callable[[KubeClusterApi], Any]) -> Any:
    api = await KubeClusterApi.from_kubeconfig(layout.kubeconfig)
    try:
        return await use(api)
    finally:
        await api.close()


async def _apply(layout: Layout, clock: Clock, path: Path, objects: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    manifests = [Manifest(f"{path}#{i}", obj) for i, obj in enumerate(objects)]
    out, err = io.StringIO(), io.StringIO()

    async def apply(api: KubeClusterApi) -> int:
        return await apply_manifests(api, manifests, out, err)

    failed = await _connected(layout, apply)
    clock.say("  " + ", ".join(out.getvalue().split(" serverside-applied\n")).rstrip(", ") + " applied")
    if failed:
        raise DemoFailed(f"applying {path} failed:\n{err.getvalue().rstrip()}")


class _Echo(io.StringIO):
    """Keeps what is written, and says each complete line as a progress line (`waiting for ...`)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._partial = ""

    def write(self, s: str) -> int:
        *lines, self._partial = (self._partial + s).split("\n")
        for line in lines:
            self._clock.say(f"  {line}")
        return super().write(s)


async def _converge(layout: Layout, clock: Clock, policies: bool) -> None:
    """`mnp local wait`, and with `policies` also every MultiNetworkPolicy Enforced."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S

    async def wait(api: KubeClusterApi) -> None:
        while True:
            out, err = io.StringIO(), _Echo(clock)
            left = max(deadline - time.monotonic(), 1.0)
            if await wait_converged(api, out, err, left) != 0:
                raise DemoFailed(
                    f"not converged in {WAIT_TIMEOUT_S:.0f}s (it still waits for what is above); "
                    + _LOOK_AROUND.format(logs=layout.root / "logs")
                )
            if not policies:
                return
            kind = await api.kind_for(MULTI_NETWORK_POLICY.api_version, MULTI_NETWORK_POLICY.kind)
            pending = not_enforced(await api.list(kind, None))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise DemoFailed(
                    "policies not Enforced in time: "
                    + "; ".join(pending)
                    + "\n"
                    + _LOOK_AROUND.format(logs=layout.root / "logs")
                )
            await asyncio.sleep(0.2)

    await _connected(layout, wait)


async def _pod_netns(layout: Layout) -> dict[str, str]:
    """{pod name: netns path} of the app's pods, found as the agent finds them (CRI, by pod uid)."""
    lookup = cri_netns_lookup(layout)

    async def find(api: KubeClusterApi) -> dict[str, str]:
        out = {}
        for p in app.PODS:
            obj = await api.get(POD, p.namespace, p.name)
            path = lookup(str(obj["spec"]["nodeName"]), str(obj["metadata"]["uid"]))
            if path is None:
                raise DemoFailed(f"pod {p.namespace}/{p.name} has no sandbox on {p.node}")
            out[p.name] = path
        return out

    result: dict[str, str] = await _connected(layout, find)
    return result


def _tell_how_to_use(layout: Layout, out: TextIO) -> None:
    d = layout.root
    print(
        f"\nThe cluster keeps running (--keep). Use it with:\n"
        f"    export KUBECONFIG={layout.kubeconfig}\n"
        f"    kubectl get pods -A; kubectl get pnr -A; kubectl get multi-policy -A\n"
        f"    mnp local exec --dir {d} shop/frontend -- socat -T1 - TCP:192.0.2.20:8080   # open: ok\n"
        f"    mnp local exec --dir {d} shop/frontend -- socat -T1 - TCP:192.0.2.30:5432   # blocked\n"
        f"The demo's manifests are in {d / 'demo'}. Remove everything with:\n"
        f"    mnp local down --dir {d}",
        file=out,
        flush=True,
    )


def _tear_down(layout: Layout, clock: Clock, remove_dir: bool) -> None:
    """cluster.down, not to be interrupted: Ctrl-C and SIGTERM are ignored while it runs."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        clock.say("tearing down the cluster")
        with clock.phase("tear down"):
            removed = cluster.down(layout)
            if remove_dir:
                shutil.rmtree(layout.root, ignore_errors=True)
        clock.say(f"torn down: {len(removed)} things removed, nothing of the cluster is left")
    except MnpError as e:
        clock.say(f"error: tear-down failed: {e}; run `mnp local down --dir {layout.root}` to finish it")
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


__all__ = ["DemoOptions", "run_demo"]
