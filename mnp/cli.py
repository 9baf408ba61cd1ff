"""Command line: argument parsing and wiring only; each subcommand calls one function elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mnp.api.errors import InvalidInput, MnpError
from mnp.api.ruleset import API_VERSION, PodRef, ruleset_object, spec_from_object
from mnp.compiler.compile import (
    DEFAULT_NETWORK_PLUGINS,
    KNOWN_NETWORK_PLUGINS,
    CompileOptions,
    compile_rulesets,
)
from mnp.demo.cli import add_demo_parser, run_demo
from mnp.diff.cli import add_diff_parser, run_diff
from mnp.local.cli import add_local_parsers, run_local
from mnp.nft.custom import parse_custom_rules
from mnp.nft.render import CustomRules, RenderOptions, render_ruleset
from mnp.offline import ManifestError, build_snapshot, dump, load_documents


def _network_plugins(text: str) -> frozenset[str]:
    plugins = frozenset(p.strip() for p in text.split(",") if p.strip())
    if not plugins:
        raise argparse.ArgumentTypeError("needs at least one CNI type")
    unknown = plugins - KNOWN_NETWORK_PLUGINS
    if unknown:
        known = ",".join(sorted(KNOWN_NETWORK_PLUGINS))
        raise argparse.ArgumentTypeError(f"unknown CNI type(s) {','.join(sorted(unknown))} (known: {known})")
    return plugins


def _add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--table-name", default="mnp", help="nft table owned by mnp in each pod netns (default mnp)"
    )
    p.add_argument("--accept-icmp", action="store_true", help="accept all ICMP on policed interfaces")
    p.add_argument("--accept-icmpv6", action="store_true", help="accept all ICMPv6 on policed interfaces")
    for family in ("v4", "v6"):
        for direction in ("ingress", "egress"):
            p.add_argument(
                f"--custom-{family}-{direction}-rule-file",
                metavar="FILE",
                help=f"nft statements added to each policed interface's {direction} chain ({family} only)",
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnp", description="MultiNetworkPolicy enforcement with nftables.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile manifests into PodNetworkRulesets, offline")
    c.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE_OR_DIR",
        help="manifests of pods, namespaces, NetworkAttachmentDefinitions and policies (- for stdin)",
    )
    c.add_argument("-o", "--output", choices=("yaml", "json", "nft"), default="yaml")
    c.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    c.add_argument(
        "--network-plugins",
        type=_network_plugins,
        default=DEFAULT_NETWORK_PLUGINS,
        help="CNI types whose networks are policed (default macvlan; known: macvlan,ipvlan,sriov)",
    )
    _add_render_options(c)

    r = sub.add_parser("render", help="print the nft transaction the agent would apply for a ruleset")
    r.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="PodNetworkRuleset objects (as kubectl get -o yaml prints them; - for stdin)",
    )
    _add_render_options(r)

    k = sub.add_parser(
        "controller", help="the cluster controller: policies -> PodNetworkRulesets (a Deployment)"
    )
    k.add_argument("--kubeconfig", type=Path, help="default: in-cluster config, else $KUBECONFIG")
    k.add_argument(
        "--network-plugins",
        type=_network_plugins,
        default=DEFAULT_NETWORK_PLUGINS,
        help="CNI types whose networks are policed (default macvlan; known: macvlan,ipvlan,sriov)",
    )
    k.add_argument(
        "--leader-elect", action="store_true", help="run only while holding the Lease (for replicas)"
    )
    k.add_argument("--leader-election-namespace", default="mnp-system", help="namespace of the Lease")
    k.add_argument("--resync-period", type=float, default=300.0, help="seconds between full passes (300)")
    k.add_argument("--health-address", default="", help="HOST:PORT for /healthz and /readyz (off)")
    k.add_argument("--metrics-address", default="", help="HOST:PORT for /metrics (off)")
    k.add_argument("--log-format", choices=("text", "json"), default="text")

    a = sub.add_parser("agent", help="the node agent: enforce this node's PodNetworkRulesets (a DaemonSet)")
    a.add_argument("--hostname-override", help="this node's name (default: $NODE_NAME, else the hostname)")
    a.add_argument("--kubeconfig", type=Path, help="default: in-cluster config, else $KUBECONFIG")
    a.add_argument(
        "--container-runtime-endpoint",
        default="",
        help="CRI socket to find pod sandboxes, e.g. unix:///run/containerd/containerd.sock "
        "(without it, or when it fails, pods are found through /proc)",
    )
    a.add_argument("--host-prefix", default="", help="where the host's / is mounted (e.g. /host)")
    a.add_argument("--resync-period", type=float, default=60.0, help="seconds between drift checks (60)")
    a.add_argument("--workers", type=int, default=16, help="pods synced in parallel (16)")
    a.add_argument("--health-address", default="", help="HOST:PORT for /healthz and /readyz (off)")
    a.add_argument("--metrics-address", default="", help="HOST:PORT for /metrics (off)")
    a.add_argument("--log-format", choices=("text", "json"), default="text")
    _add_render_options(a)

    add_local_parsers(sub)
    add_demo_parser(sub)
    add_diff_parser(sub, _network_plugins)
    return parser


def _render_options(args: argparse.Namespace) -> RenderOptions:
    custom: dict[str, tuple[str, ...]] = {}
    for family in ("v4", "v6"):
        for direction in ("ingress", "egress"):
            path = getattr(args, f"custom_{family}_{direction}_rule_file")
            if path:
                try:
                    text = Path(path).read_text()
                except OSError as e:
                    raise InvalidInput("", f"cannot read custom rule file: {e.strerror}", path) from None
                custom[f"{family}_{direction}"] = parse_custom_rules(text, path)
    return RenderOptions(
        table=args.table_name,
        accept_icmp=args.accept_icmp,
        accept_icmpv6=args.accept_icmpv6,
        custom=CustomRules(**custom),
    )


def run_compile(args: argparse.Namespace) -> int:
    options = _render_options(args) if args.output == "nft" else None
    loaded = build_snapshot(load_documents(args.filename))
    result = compile_rulesets(loaded.snapshot, CompileOptions(network_plugins=args.network_plugins))
    diagnostics = result.diagnostics
    for d in diagnostics:
        where = loaded.where(d)
        print(f"warning: {where + ': ' if where else ''}{d}", file=sys.stderr)
    uids = {p.ref: p.uid for p in loaded.snapshot.pods}
    if options is not None:
        for ref, spec in result.rulesets.items():
            sys.stdout.write(f"# {ref} (PodNetworkRuleset {API_VERSION})\n")
            sys.stdout.write(render_ruleset(spec, options))
    else:
        items = [
            ruleset_object(PodRef(ref.namespace, ref.name, uids.get(ref, spec.pod_uid)), spec)
            for ref, spec in result.rulesets.items()
        ]
        sys.stdout.write(dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output))
    # Policy-level problems are warnings: the rest still compiles (DESIGN §4); --strict fails on them.
    return 1 if args.strict and diagnostics else 0


def run_render(args: argparse.Namespace) -> int:
    options = _render_options(args)
    for doc in load_documents(args.filename):
        try:
            spec = spec_from_object(doc.obj)
        except InvalidInput as e:
            raise InvalidInput(
                e.field, e.message, f"{doc.source}: {e.obj}" if e.obj else doc.source
            ) from None
        meta = doc.obj.get("metadata") or {}
        sys.stdout.write(f"# {meta.get('namespace', '')}/{meta.get('name', '')} ({doc.source})\n")
        sys.stdout.write(render_ruleset(spec, options))
    return 0


def run_agent(args: argparse.Namespace) -> int:
    import asyncio

    from mnp.agent.agent import BadCustomRules
    from mnp.agent.main import AgentFlags, node_name
    from mnp.agent.main import run_agent as agent_main
    from mnp.local.nodes.cri import CriClient
    from mnp.obs.log import setup

    setup(json_format=args.log_format == "json", component="agent")
    flags = AgentFlags(
        node=node_name(args.hostname_override),
        kubeconfig=args.kubeconfig,
        runtime_endpoint=args.container_runtime_endpoint,
        host_prefix=args.host_prefix,
        options=_render_options(args),
        resync_period=args.resync_period,
        health_address=args.health_address,
        metrics_address=args.metrics_address,
        workers=max(1, args.workers),
        cri_connect=CriClient,
    )
    try:
        asyncio.run(agent_main(flags))
    except BadCustomRules as e:
        for slot, rule, why in e.bad:
            path = getattr(args, f"custom_{slot}_rule_file")
            lines = Path(path).read_text().splitlines()
            number = next((i for i, line in enumerate(lines, start=1) if line.strip() == rule), 0)
            print(f"error: {path}:{number}: nft refuses the rule {rule!r}: {why}", file=sys.stderr)
        return 1
    except MnpError as e:  # unreachable API server, bad kubeconfig, ...: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run_controller(args: argparse.Namespace) -> int:
    import asyncio

    from mnp.controller.main import ControllerFlags
    from mnp.controller.main import run_controller as controller_main
    from mnp.obs.log import setup

    setup(json_format=args.log_format == "json", component="controller")
    flags = ControllerFlags(
        kubeconfig=args.kubeconfig,
        network_plugins=args.network_plugins,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        health_address=args.health_address,
        metrics_address=args.metrics_address,
        resync_period=args.resync_period,
    )
    try:
        asyncio.run(controller_main(flags))
    except MnpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "compile": run_compile,
        "render": run_render,
        "local": run_local,
        "demo": run_demo,
        "agent": run_agent,
        "controller": run_controller,
        "diff": run_diff,
    }
    try:
        return handlers[args.command](args)
    except (ManifestError, InvalidInput) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
