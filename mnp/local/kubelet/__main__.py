"""`python -m mnp.local.kubelet --dir DIR --node NAME`: one node process of a local cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from mnp.kube.client import Client
from mnp.local.kubelet.kubelet import Kubelet, ca_from_kubeconfig
from mnp.local.kubelet.podrun import NodeEnv
from mnp.local.layout import Layout, LayoutError
from mnp.local.nodes.containerd_config import load_settings
from mnp.obs.log import setup as log_setup


async def run_node(layout: Layout, node: str) -> None:
    cluster = layout.read_cluster()
    config = cluster.node(node)
    runtime = load_settings(layout.node_dir(node))
    if runtime is None:
        raise LayoutError(
            f"node {node}: no containerd settings in {layout.node_dir(node)}; is the cluster up?"
        )
    env = NodeEnv(layout, cluster, config, runtime)
    client = await Client.from_kubeconfig(layout.kubeconfig)
    try:
        kubelet = Kubelet(client, env, client.server, ca_from_kubeconfig(layout.kubeconfig.read_text()))
        task = asyncio.create_task(kubelet.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnp.local.kubelet")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args(argv)
    log_setup("INFO", component=args.node)
    try:
        asyncio.run(run_node(Layout.at(args.dir), args.node))
    except LayoutError as e:
        print(f"mnp local node: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
