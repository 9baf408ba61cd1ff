"""`mnp agent`: assemble the agent from its flags and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnp.agent.agent import Agent, AgentConfig, BadCustomRules
from mnp.agent.netns import CriFinder, NetnsFinder, ProcfsFinder, SandboxLookup
from mnp.agent.scratch import Scratch
from mnp.kube.client import Client
from mnp.nft.render import RenderOptions
from mnp.obs.health import run_until_signalled, start_servers
from mnp.obs.metrics import AgentMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentFlags:
    node: str
    kubeconfig: Path | None
    runtime_endpoint: str
    host_prefix: str
    options: RenderOptions
    resync_period: float
    health_address: str
    metrics_address: str
    workers: int
    cri_connect: Callable[[str], SandboxLookup]  # a CRI client for a socket path (cli.py: CriClient)


def node_name(override: str | None) -> str:
    """--hostname-override, else NODE_NAME (the downward API in the DaemonSet), else the hostname."""
    return override or os.environ.get("NODE_NAME") or socket.gethostname()


async def run_agent(flags: AgentFlags) -> None:
    scratch = Scratch()
    bad = scratch.check_custom_rules(flags.options)
    if bad:
        scratch.close()
        raise BadCustomRules(bad)
    client = await Client.from_environment(flags.kubeconfig)
    metrics = AgentMetrics()
    cri = (
        CriFinder(flags.runtime_endpoint, flags.host_prefix, connect=flags.cri_connect)
        if flags.runtime_endpoint
        else None
    )
    finder = NetnsFinder(cri, ProcfsFinder(host_prefix=flags.host_prefix))
    agent = Agent(
        client,
        AgentConfig(flags.node, flags.options, flags.resync_period, flags.workers),
        finder,
        metrics,
        scratch,
    )
    # /healthz, /readyz and /metrics are served on each address given (one server if both are equal).
    servers = start_servers((flags.health_address, flags.metrics_address), metrics.render, agent.ready.is_set)
    log.info("agent starting", extra={"node": flags.node, "table": flags.options.table})
    try:
        await run_until_signalled(agent.run(), servers)
    finally:
        await client.close()


__all__ = ["AgentFlags", "node_name", "run_agent"]
