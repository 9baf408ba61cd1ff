"""The demo behind hack/demo.sh: real pods on a real macvlan network, before and after a policy.

Builds two nodes and four pods as network namespaces on a fabric bridge, attaches each pod to the
`shop/lan` macvlan network with the real CNI plugin (as Multus would), writes the pod manifests with
the network-status the plugin reported, compiles hack/demo/policy.yaml with `mnp compile`, renders
and applies each ruleset in its pod's netns, and prints the connectivity matrix before and after.
Everything it made is removed at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mnp.api.ruleset import spec_from_object
from mnp.local.nodes.fabric import Attachment, Fabric, PodNet
from mnp.local.nodes.probe import Probe, probe_all
from mnp.nft.apply import NetnsNft
from mnp.nft.render import RenderOptions, render_ruleset

HERE = Path(__file__).parent / "demo"
NETWORK = "shop/lan"
# name: (namespace, node, labels, host part of its addresses, name of its service port)
PODS: dict[str, tuple[str, int, dict[str, str], int, str]] = {
    "frontend": ("shop", 1, {"app": "frontend"}, 10, "http"),
    "backend": ("shop", 1, {"app": "backend"}, 20, "api"),
    "db": ("shop", 2, {"app": "db"}, 30, "postgres"),
    "monitor": ("ops", 2, {"app": "monitor"}, 40, "metrics"),
}
PORTS = {"frontend": 80, "backend": 8080, "db": 5432, "monitor": 9100}


def pod_manifest(name: str, net: PodNet) -> dict[str, Any]:
    ns, node, labels, _, port_name = PODS[name]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"demo-{name}",
            "labels": labels,
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": f"{NETWORK}@net1",
                "k8s.v1.cni.cncf.io/network-status": json.dumps(net.network_status),
            },
        },
        "spec": {
            "nodeName": f"node-{node}",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "ports": [{"name": port_name, "containerPort": PORTS[name], "protocol": "TCP"}],
                }
            ],
        },
        "status": {"phase": "Running"},
    }


def matrix(pods: dict[str, PodNet], family: int) -> list[list[str]]:
    names = list(PODS)
    cells = [(src, dst) for src in names for dst in names if src != dst]
    probes = []
    for src, dst in cells:
        host = PODS[dst][3]
        addr = f"192.0.2.{host}" if family == 4 else f"2001:db8::{host}"
        probes.append(Probe(pods[src].netns_path, pods[dst].netns_path, addr, PORTS[dst], "tcp"))
    # All cells at once: a denied flow costs one timeout for the whole matrix, not one per cell.
    verdicts = dict(zip(cells, probe_all(probes, timeout=1.0), strict=True))
    mark = {True: "✔ ", False: "✘ "}
    return [[src] + ["·" if src == dst else mark[verdicts[src, dst]] for dst in names] for src in names]


def show_matrix(title: str, pods: dict[str, PodNet]) -> None:
    print(f"\n{title}")
    header = ["from \\ to"] + [f"{n}:{PORTS[n]}" for n in PODS]
    for family in (4, 6):
        rows = matrix(pods, family)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        print(f"  IPv{family}:")
        print("    " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def mnp(*args: str) -> str:
    cmd = [sys.executable, "-m", "mnp", *args]
    print(f"$ mnp {' '.join(args)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"mnp {args[0]} failed with exit status {done.returncode}")
    return done.stdout


def main() -> int:
    prefix = f"mnpdemo{os.getpid() % 100000}"
    contexts: list[NetnsNft] = []
    with Fabric(prefix, nodes=2) as fabric, tempfile.TemporaryDirectory(prefix="mnp-demo-") as tmp:
        print(f"Two nodes, four pods (netns {prefix}-*), each on {NETWORK}: macvlan made by the CNI plugin")
        pods = {
            name: fabric.add_pod(
                name, node, [Attachment(NETWORK, "net1", (f"192.0.2.{host}/24", f"2001:db8::{host}/64"))]
            )
            for name, (_ns, node, _labels, host, _port) in PODS.items()
        }
        manifests = Path(tmp)
        (manifests / "pods.yaml").write_text(
            yaml.safe_dump_all([pod_manifest(n, p) for n, p in pods.items()], sort_keys=False)
        )
        for f in ("network.yaml", "policy.yaml"):
            (manifests / f).write_text((HERE / f).read_text())
        show_matrix("Connectivity before any policy (TCP to each pod's service port):", pods)

        print("\nCompiling hack/demo/policy.yaml against the pods:")
        out = mnp("compile", "-f", str(manifests))
        rulesets = yaml.safe_load(out)["items"]
        print(f"{'NAMESPACE':<8} {'NAME':<10} {'NODE':<8} {'POLICIES':<26} RULES")
        for item in rulesets:
            spec = item["spec"]
            rules = sum(len(spec.get(d, {}).get("rules", [])) for d in ("ingress", "egress"))
            meta = item["metadata"]
            policies = ",".join(spec["policies"])
            print(f"{meta['namespace']:<8} {meta['name']:<10} {spec['node']:<8} {policies:<26} {rules}")

        options = RenderOptions()
        try:
            apply_and_show(rulesets, pods, options, contexts)
        finally:
            # A libnftables context pins its netns: close them before the namespaces go.
            for ctx in contexts:
                ctx.close()
    print("Cleaned up: every namespace, link and table the demo made is gone.")
    return 0


def apply_and_show(
    rulesets: list[dict[str, Any]], pods: dict[str, PodNet], options: RenderOptions, contexts: list[NetnsNft]
) -> None:
    for item in rulesets:
        spec = spec_from_object(item)
        ctx = NetnsNft(pods[item["metadata"]["name"]].netns_path)
        contexts.append(ctx)
        ctx.apply(render_ruleset(spec, options, ctx.table_shape(options.table)))
    print(f"Applied {len(rulesets)} table(s), one atomic nft transaction per pod.")
    show_matrix("Connectivity with the policies:", pods)

    print("\nThe nft table in the db pod (nft list table inet mnp):")
    db = next(c for c, item in zip(contexts, rulesets, strict=True) if item["metadata"]["name"] == "db")
    print(db.list_table(options.table))


if __name__ == "__main__":
    sys.exit(main())
