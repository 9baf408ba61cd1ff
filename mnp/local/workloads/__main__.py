"""`python -m mnp.local.workloads --kubeconfig PATH`: the local cluster's scheduler and workload
controllers as one process; logs to stderr; SIGTERM and SIGINT stop it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from mnp.local.workloads.runner import run_controllers
from mnp.obs.log import setup as log_setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnp.local.workloads", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    log_setup(args.log_level, component="workloads")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_controllers(args.kubeconfig, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
