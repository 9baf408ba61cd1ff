"""`mnp diff -f FILES`: read the live cluster, run the pure comparison, print it like `kubectl diff`.

Exit status as kubectl diff: 0 nothing would change, 1 some ruleset would, 2 an error (unreadable
file, unreachable or refusing API server), said in one line with what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mnp.api.errors import InvalidInput, MnpError
from mnp.compiler.compile import DEFAULT_NETWORK_PLUGINS, CompileOptions
from mnp.diff.compare import Live, diff_rulesets
from mnp.kube.client import Client
from mnp.kube.errors import KubeApiError
from mnp.kube.resources import MNPS, NADS, NAMESPACES, PODS, RULESETS
from mnp.offline import load_documents

NO_CHANGES, CHANGES, ERROR = 0, 1, 2
# A command answers quickly: a server that is down for longer than this is reported, not waited for.
RETRY_FOR_S = 3.0
WHERE_HINT = "check --kubeconfig, $KUBECONFIG or ~/.kube/config and that the API server is up"
APPLY_CRDS = "is mnp installed? apply crds/ (and the Multus NetworkAttachmentDefinition CRD)"
RBAC_HINT = "mnp diff needs list on pods, namespaces, NADs, multi-networkpolicies and podnetworkrulesets"


class ClusterUnreadable(MnpError):
    """The live objects could not be read; the message says what to check."""


def add_diff_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    network_plugins: Callable[[str], frozenset[str]],
) -> None:
    """Add `diff` to the top-level subparsers of `mnp`; `network_plugins` parses --network-plugins."""
    p = subparsers.add_parser(
        "diff", help="show the PodNetworkRulesets that applying policy files would change (like kubectl diff)"
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE_OR_DIR",
        help="MultiNetworkPolicies (and NetworkAttachmentDefinitions) to apply: files, dirs or - for stdin",
    )
    p.add_argument("-n", "--namespace", help="namespace of documents that name none (default: default)")
    p.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG, ~/.kube/config, else in-cluster")
    p.add_argument(
        "--network-plugins",
        type=network_plugins,
        default=DEFAULT_NETWORK_PLUGINS,
        help="as the controller's flag: CNI types whose networks are policed (default macvlan)",
    )


async def connect(kubeconfig: Path | None) -> Client:
    """As kubectl finds its cluster: --kubeconfig, $KUBECONFIG, ~/.kube/config, else in-cluster.

    (The controller and agent, which run in pods, prefer in-cluster; a command run by hand or in CI
    means the kubeconfig it was given.)
    """
    path = kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config"
    if kubeconfig or os.environ.get("KUBECONFIG") or Path(path).is_file():
        return await Client.from_kubeconfig(path, retry_for=RETRY_FOR_S)
    return await Client.in_cluster(retry_for=RETRY_FOR_S)


async def read_live(kubeconfig: Path | None) -> Live:
    """Every pod, namespace, NAD, policy and ruleset of the cluster."""
    try:
        client = await connect(kubeconfig)
    except MnpError as e:  # no kubeconfig, bad kubeconfig, not in a pod
        raise ClusterUnreadable(f"{e}; {WHERE_HINT}") from None
    try:
        lists = await asyncio.gather(*(client.list(r) for r in (PODS, NAMESPACES, NADS, MNPS, RULESETS)))
        return Live(*(tuple(found.items) for found in lists))
    except KubeApiError as e:
        hint = {404: APPLY_CRDS, 401: RBAC_HINT, 403: RBAC_HINT}.get(e.code, WHERE_HINT)
        raise ClusterUnreadable(f"cannot read the cluster at {client.server}: {e}; {hint}") from None
    finally:
        await client.close()


def run_diff(args: argparse.Namespace) -> int:
    try:
        docs = load_documents(args.filename)  # a bad file fails before the cluster is asked
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return ERROR
    # The client logs each retry; a command says what failed once, at the end.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    try:
        live = asyncio.run(read_live(args.kubeconfig))
    except ClusterUnreadable as e:
        print(f"error: {e}", file=sys.stderr)
        return ERROR
    try:
        diff = diff_rulesets(live, docs, CompileOptions(network_plugins=args.network_plugins), args.namespace)
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return ERROR
    for warning in diff.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(diff.text)
    return CHANGES if diff.changed else NO_CHANGES


__all__ = ["add_diff_parser", "connect", "read_live", "run_diff"]
