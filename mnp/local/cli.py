"""`mnp local ...`: argument parsing and wiring for the embedded local cluster's subcommands.

Every subcommand takes `--dir DIR` (else $MNP_LOCAL_DIR): the state dir from which `Layout` gives every
path. Exit status: 0 ok, 1 failure (one line saying what to do next), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from mnp.api.errors import MnpError
from mnp.local.ctl import apply as apply_verb
from mnp.local.ctl import delete as delete_verb
from mnp.local.ctl import get as get_verb
from mnp.local.ctl import pods, status, wait
from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.manifests import Manifest, load_manifests
from mnp.local.layout import Layout

T = TypeVar("T")

DIR_ENV = "MNP_LOCAL_DIR"
USAGE = 2


def _dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, help=f"the cluster's state dir (default ${DIR_ENV})")


def _files_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help=f"manifests to {what}: files, directories (*.yaml, *.yml, *.json) or - for stdin",
    )


def add_local_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `local` and its subcommands to the top-level subparsers of `mnp`."""
    local = subparsers.add_parser("local", help="the embedded local cluster")
    sub = local.add_subparsers(dest="local_command", required=True, metavar="LOCAL_COMMAND")

    api = sub.add_parser("apiserver", help="run the local Kubernetes API server in the foreground")
    api.add_argument("--dir", required=True, type=Path, help="state directory (made if missing)")
    api.add_argument(
        "--address", default="127.0.0.1:0", help="HOST:PORT for HTTPS (default 127.0.0.1:0: a free port)"
    )

    p = sub.add_parser(
        "up", help="start a local cluster (API server, nodes, containerd, kubelets); returns when Ready"
    )
    p.add_argument("--nodes", type=int, default=2, help="number of nodes, node-1 ... node-N (default 2)")
    p.add_argument(
        "--no-deploy",
        action="store_true",
        help="do not install mnp itself (crds/ and deploy/: the controller and the agents)",
    )
    _dir_option(p)

    p = sub.add_parser("down", help="stop the cluster and remove everything of it (also after a crash)")
    _dir_option(p)

    p = sub.add_parser("apply", help="server-side apply manifests (CRDs and namespaces first)")
    _files_option(p, "apply")
    _dir_option(p)

    p = sub.add_parser("delete", help="delete the manifests' objects and wait until they are gone")
    _files_option(p, "delete")
    p.add_argument(
        "--timeout", type=float, default=delete_verb.DEFAULT_TIMEOUT_S, help="seconds to wait (default 120)"
    )
    _dir_option(p)

    p = sub.add_parser("get", help="show objects: a table, or one object / a List as YAML or JSON")
    p.add_argument("kind", metavar="KIND", help="plural, singular, kind or short name (pods, po, pnr, ...)")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-o", "--output", choices=("yaml", "json", "wide", "name"), default="table")
    _dir_option(p)

    p = sub.add_parser(
        "exec",
        help="run a host command in a pod's network namespace",
        usage="mnp local exec [-h] [-c CONTAINER] [--dir DIR] NS/POD -- CMD [ARG ...]",
    )
    p.add_argument("pod", metavar="NS/POD")
    p.add_argument("-c", "--container", help="container (checked to exist; all share the netns)")
    p.add_argument("argv", metavar="CMD", nargs="+", help="command and arguments, after -- (no shell)")
    _dir_option(p)

    p = sub.add_parser("logs", help="print a container's log")
    p.add_argument("pod", metavar="NS/POD")
    p.add_argument("-c", "--container", help="container (default: the pod's first)")
    p.add_argument("-p", "--previous", action="store_true", help="the log of the run before the last restart")
    _dir_option(p)

    p = sub.add_parser("kubeconfig", help="print the kubeconfig path (kubectl --kubeconfig $(...))")
    _dir_option(p)

    p = sub.add_parser("status", help="API server, components, nodes and pods; exit 1 if something is down")
    _dir_option(p)

    p = sub.add_parser("wait", help="block until every pod, policy and ruleset has converged")
    p.add_argument(
        "--timeout", type=float, default=wait.DEFAULT_TIMEOUT_S, help="seconds to wait (default 300)"
    )
    _dir_option(p)


def state_dir(args: argparse.Namespace) -> Path | None:
    """--dir, else $MNP_LOCAL_DIR, else None."""
    given = getattr(args, "dir", None) or os.environ.get(DIR_ENV)
    return Path(given) if given else None


def cri_netns_lookup(layout: Layout) -> pods.NetnsLookup:
    """Find a pod's netns through the containerd CRI socket of its node."""
    from mnp.local.nodes.cri import CriClient, CriError

    def lookup(node: str, uid: str) -> str | None:
        socket = layout.node_dir(node) / "containerd.sock"
        try:
            with CriClient(str(socket)) as cri:
                return cri.find_sandbox_netns(uid)
        except CriError as e:
            raise pods.PodError(
                f"cannot ask containerd of {node} ({e}); is the node running? `mnp local status` shows it"
            ) from None

    return lookup


class ClusterDown(MnpError):
    """The cluster's API server cannot be reached (no kubeconfig, nothing listening)."""


async def _connected(layout: Layout, verb: Callable[[ClusterApi], Awaitable[T]]) -> T:
    """Run `verb` with an API client for the cluster in `layout`, closed afterwards."""
    from mnp.kube.errors import Unreachable
    from mnp.local.ctl.kubeapi import KubeClusterApi  # mnp.kube and kr8s only for verbs that need them

    if not layout.kubeconfig.exists():
        raise ClusterDown(
            f"no kubeconfig at {layout.kubeconfig}: the cluster is not up; "
            f"`mnp local up --dir {layout.root}` starts it"
        )
    api = await KubeClusterApi.from_kubeconfig(layout.kubeconfig)
    try:
        return await verb(api)
    except Unreachable as e:
        raise ClusterDown(
            f"{e}; is the cluster up? `mnp local status --dir {layout.root}` shows it"
        ) from None
    finally:
        await api.close()


async def _api_verb(
    args: argparse.Namespace,
    layout: Layout,
    ref: pods.PodRef | None,
    manifests: list[Manifest],
    api: ClusterApi,
) -> int:
    out, err = sys.stdout, sys.stderr
    command = args.local_command
    if command == "apply":
        return await apply_verb.apply_manifests(api, manifests, out, err)
    if command == "delete":
        return await delete_verb.delete_manifests(api, manifests, out, err, args.timeout)
    if command == "get":
        return await get_verb.get_objects(
            api, args.kind, args.name, args.namespace, args.all_namespaces, args.output, out, err
        )
    if command == "status":
        return await status.print_status(api, layout, out)
    if command == "wait":
        return await wait.wait_converged(api, out, err, args.timeout)
    if command == "logs" and ref is not None:
        out.flush()
        await pods.print_logs(api, layout, ref, args.container, args.previous, out.buffer)
        return 0
    raise AssertionError(f"mnp local {command} has no handler")


def _progress(message: str) -> None:
    print(f"mnp local: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, layout: Layout, ref: pods.PodRef | None) -> int:
    command = args.local_command
    if command in ("up", "down"):
        from mnp.local import cluster  # the node runtime (containerd, CNI) only for these two

        if command == "up":
            cluster.up(layout, args.nodes, _progress, deploy=not args.no_deploy)
            print(layout.kubeconfig)
        else:
            removed = cluster.down(layout, _progress)
            _progress(f"down: {len(removed)} things removed; nothing of the cluster is left")
        return 0
    if command == "kubeconfig":
        if not layout.kubeconfig.exists():
            raise ClusterDown(
                f"no kubeconfig at {layout.kubeconfig}: `mnp local up --dir {layout.root}` first"
            )
        print(layout.kubeconfig)
        return 0
    if command == "status" and not layout.kubeconfig.exists():
        return asyncio.run(status.print_status(None, layout, sys.stdout))
    if command == "exec" and ref is not None:
        lookup = cri_netns_lookup(layout)
        netns = asyncio.run(_connected(layout, lambda api: pods.pod_netns(api, ref, args.container, lookup)))
        # The API connection is closed before the command runs: it may run for long.
        return pods.run_command(pods.exec_argv(netns, args.argv))
    # Manifests are read before connecting, so a bad file is reported even when the cluster is down.
    manifests = load_manifests(args.filename) if command in ("apply", "delete") else []
    return asyncio.run(_connected(layout, lambda api: _api_verb(args, layout, ref, manifests, api)))


def run_local(args: argparse.Namespace) -> int:
    """Run the `mnp local` subcommand in `args`; the exit status."""
    if args.local_command == "apiserver":
        from mnp.local.apiserver.server import run as run_apiserver

        return run_apiserver(args.dir, args.address)
    directory = state_dir(args)
    if directory is None:
        print(f"mnp local {args.local_command}: error: pass --dir DIR or set {DIR_ENV}", file=sys.stderr)
        return USAGE
    try:
        ref = pods.parse_pod_ref(args.pod) if "pod" in vars(args) else None
    except ValueError as e:
        print(f"mnp local {args.local_command}: error: {e}", file=sys.stderr)
        return USAGE
    try:
        return _run(args, Layout.at(directory), ref)
    except MnpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


__all__ = ["DIR_ENV", "add_local_parsers", "run_local"]
