"""`mnp demo`: argument parsing and wiring only (the demo itself is mnp.demo.run)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnp.api.errors import MnpError
from mnp.demo.run import DemoOptions
from mnp.demo.run import run_demo as run


def add_demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo` to the top-level subparsers of `mnp`."""
    p = subparsers.add_parser(
        "demo",
        help="a local cluster, a sample app, its connectivity before and after a policy (needs root)",
        description="Bring up a 2-node local cluster running mnp, start a sample app on a macvlan "
        "network, show which pods reach which before and after a MultiNetworkPolicy, then tear "
        "everything down. Exits 1 if the enforced connectivity is not what the policy allows.",
    )
    p.add_argument(
        "--dir",
        type=Path,
        help="state dir of the cluster (a short path, may exist empty; default: a new /tmp/mnp-demo-*)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the cluster running at the end and print how to use it and `mnp local down` it",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run `mnp demo`; the exit status."""
    if os.geteuid() != 0:
        print("error: mnp demo needs root (netns, containerd, nftables); run it with sudo", file=sys.stderr)
        return 1
    if args.dir is not None and args.dir.exists() and any(args.dir.iterdir()):
        print(
            f"error: {args.dir} is not empty; pass a new or empty --dir "
            f"(or `mnp local down --dir {args.dir}` if a cluster runs there)",
            file=sys.stderr,
        )
        return 1
    try:
        return run(DemoOptions(directory=args.dir, keep=args.keep))
    except MnpError as e:  # before the cluster exists: a --dir that cannot hold one
        print(f"error: {e}", file=sys.stderr)
        return 1


__all__ = ["add_demo_parser", "run_demo"]
