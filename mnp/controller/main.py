"""`mnp controller`: assemble the controller from its flags; with --leader-elect, run only while leading."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mnp.compiler.compile import CompileOptions
from mnp.controller.controller import Controller, ControllerConfig
from mnp.kube.client import Client
from mnp.kube.lease import LeaderElector
from mnp.obs.health import run_until_signalled, start_servers
from mnp.obs.metrics import ControllerMetrics

log = logging.getLogger(__name__)
LEASE_NAME = "mnp-controller"


@dataclass(frozen=True, slots=True)
class ControllerFlags:
    kubeconfig: Path | None
    network_plugins: frozenset[str]
    leader_elect: bool
    leader_election_namespace: str
    health_address: str
    metrics_address: str
    resync_period: float
    lease_duration: int = 15
    renew_deadline: float = 10
    retry_period: float = 2


def identity() -> str:
    """This replica's name in the Lease: the pod name (downward API) or host, plus the pid."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


async def run_controller(flags: ControllerFlags) -> None:
    client = await Client.from_environment(flags.kubeconfig)
    metrics = ControllerMetrics()
    config = ControllerConfig(CompileOptions(network_plugins=flags.network_plugins), flags.resync_period)
    leading = asyncio.Event()
    current: list[Controller] = []

    def ready() -> bool | str:
        if flags.leader_elect and not leading.is_set():
            return True  # a standby replica is ready: it is waiting for the lease, as it should
        return bool(current) and current[-1].ready.is_set() or "first reconcile not done yet"

    servers = start_servers((flags.health_address, flags.metrics_address), metrics.render, ready)

    async def lead() -> None:
        leading.set()
        controller = Controller(client, config, metrics)
        current.append(controller)
        await controller.run()

    async def stopped() -> None:
        leading.clear()

    async def main() -> None:
        if not flags.leader_elect:
            await lead()
            return
        while True:
            elector = LeaderElector(
                client,
                flags.leader_election_namespace,
                LEASE_NAME,
                identity(),
                flags.lease_duration,
                flags.renew_deadline,
                flags.retry_period,
            )
            await elector.run(lead, stopped)
            log.warning("leadership lost; standing by for the lease again")

    log.info("controller starting", extra={"leader_elect": flags.leader_elect, "identity": identity()})
    try:
        await run_until_signalled(main(), servers)
    finally:
        await client.close()


__all__ = ["ControllerFlags", "identity", "run_controller"]
