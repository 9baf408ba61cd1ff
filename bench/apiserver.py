"""Benchmark of the local API server (`mnp local apiserver`), run as users run it: a separate process
over HTTPS with the kubeconfig's token.

Measures: writes per second (create, update, status patch) with 10 watchers attached; watch delivery
latency p50/p99 (write sent → event read by a watcher); list of 10,000 objects (JSON and Table);
resident memory of the server with 100,000 objects. Prints a markdown table (bench/README.md).

    .venv/bin/python bench/apiserver.py [--writes 1000] [--list 10000] [--memory 100000] [--writers 4]
        [--repo DIR]   (serve from another checkout, e.g. a `git worktree` of an older commit)
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "podnetworkrulesets.yaml"
PNR = "/apis/mnp.dev/v1alpha1"


class Server:
    """`mnp local apiserver` in `directory`, run from the source tree `repo` (another revision's
    checkout, e.g. a `git worktree`, runs that revision: `python -m mnp` finds the package in cwd)."""

    def __init__(self, directory: Path, repo: Path = REPO) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = directory
        (directory / "kubeconfig").unlink(missing_ok=True)  # readiness = the server wrote it anew
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnp",
                "local",
                "apiserver",
                "--dir",
                str(directory),
                "--address",
                f"127.0.0.1:{self.port}",
            ],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while not (directory / "kubeconfig").exists():
            if self.proc.poll() is not None or time.monotonic() - t0 > 20:
                self.stop()
                raise RuntimeError("apiserver did not start")
            time.sleep(0.01)
        cfg = yaml.safe_load((directory / "kubeconfig").read_text())
        self.token = cfg["users"][0]["user"]["token"]
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        self.ctx = ssl.create_default_context(cadata=ca)
        self.conn().call("GET", "/version")
        self.startup = time.monotonic() - t0

    def conn(self) -> Conn:
        return Conn(self)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class Conn:
    """One keep-alive HTTPS connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ctx, timeout=120)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        ctype: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.server.token}", "Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        self.http.request(method, path, body=data, headers=headers)
        resp = self.http.getresponse()
        raw = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw)


def ruleset(name: str, ns: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "mnp.dev/v1alpha1",
        "kind": "PodNetworkRuleset",
        "metadata": {"name": name, "namespace": ns, "labels": {"mnp.dev/node": node}},
        "spec": {
            "podUID": "4f1c9a3e-2b7d-4e0f-8a6c-5d1e2f3a4b5c",
            "node": node,
            "policies": ["default/web-policy"],
            "interfaces": [{"name": "net1", "network": f"{ns}/macvlan1", "ips": ["192.0.2.5"]}],
            "ingress": {
                "isolated": ["net1"],
                "rules": [
                    {
                        "policy": "default/web-policy",
                        "rule": 0,
                        "interface": "net1",
                        "peers": [{"cidr": "192.0.2.7/32"}],
                        "ports": [{"protocol": "TCP", "port": 8080}],
                    }
                ],
            },
        },
    }


class Watcher(threading.Thread):
    """Reads one watch stream, recording the arrival time of each object's (name, resourceVersion)."""

    def __init__(self, server: Server, path: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ctx, timeout=300)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {server.token}"})
        self.resp = self.conn.getresponse()
        self.seen: dict[str, float] = {}
        self.start()

    def run(self) -> None:
        try:
            while line := self.resp.readline():
                now = time.monotonic()
                ev = json.loads(line)
                self.seen[ev["object"]["metadata"]["resourceVersion"]] = now
        except Exception:  # noqa: BLE001 - the stream was closed under the reader: done
            return

    def close(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def in_threads(n: int, work: Callable[[int], None]) -> float:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def bench_writes(server: Server, writes: int, writers: int, watchers: int) -> list[tuple[str, str]]:
    server.conn().call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench-w"}})
    w = [
        Watcher(server, f"{PNR}/namespaces/bench-w/podnetworkrulesets?watch=true&resourceVersion=0")
        for _ in range(watchers)
    ]
    time.sleep(0.3)
    sent: dict[str, float] = {}
    per = writes // writers
    objs: dict[int, list[dict[str, Any]]] = {}

    def create(i: int) -> None:
        c = server.conn()
        objs[i] = []
        for n in range(per):
            t = time.monotonic()
            made = c.call(
                "POST",
                f"{PNR}/namespaces/bench-w/podnetworkrulesets",
                ruleset(f"w{i}-{n}", "bench-w", "node-1"),
            )
            sent[made["metadata"]["resourceVersion"]] = t
            objs[i].append(made)

    def update(i: int) -> None:
        c = server.conn()
        for n, obj in enumerate(objs[i]):
            obj["spec"]["policies"] = ["default/web-policy", f"default/p{n}"]
            t = time.monotonic()
            made = c.call(
                "PUT", f"{PNR}/namespaces/bench-w/podnetworkrulesets/{obj['metadata']['name']}", obj
            )
            sent[made["metadata"]["resourceVersion"]] = t

    def status(i: int) -> None:
        c = server.conn()
        for obj in objs[i]:
            t = time.monotonic()
            made = c.call(
                "PATCH",
                f"{PNR}/namespaces/bench-w/podnetworkrulesets/{obj['metadata']['name']}/status",
                {"status": {"observedGeneration": 2, "rules": 1}},
                "application/merge-patch+json",
            )
            sent[made["metadata"]["resourceVersion"]] = t

    rows = []
    for label, work in (("create", create), ("update (PUT)", update), ("status patch (merge)", status)):
        elapsed = in_threads(writers, work)
        rows.append(
            (f"{label}: writes/s, {writers} writers, {watchers} watchers", f"{per * writers / elapsed:.0f}")
        )
    time.sleep(1.0)
    latencies = [
        (watcher.seen[rv] - t) * 1000 for rv, t in sent.items() for watcher in w if rv in watcher.seen
    ]
    missing = len(sent) * len(w) - len(latencies)
    rows.append(
        ("watch delivery latency p50 / p99 (ms)", f"{pct(latencies, 50):.1f} / {pct(latencies, 99):.1f}")
    )
    rows.append(("events missed by watchers", str(missing)))
    for watcher in w:
        watcher.close()
    return rows


def fill(server: Server, ns: str, count: int, writers: int) -> float:
    server.conn().call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    per = count // writers

    def work(i: int) -> None:
        c = server.conn()
        for n in range(per):
            c.call(
                "POST", f"{PNR}/namespaces/{ns}/podnetworkrulesets", ruleset(f"r{i}-{n}", ns, f"node-{n % 8}")
            )

    elapsed = in_threads(writers, work)
    return per * writers / elapsed


def bench_list(server: Server, count: int, writers: int) -> list[tuple[str, str]]:
    fill(server, "bench-l", count, writers)
    c = server.conn()
    rows = []
    for label, accept in (
        ("JSON", "application/json"),
        ("Table", "application/json;as=Table;v=v1;g=meta.k8s.io"),
    ):
        times = []
        for _ in range(3):
            t = time.monotonic()
            got = c.call("GET", f"{PNR}/namespaces/bench-l/podnetworkrulesets", accept=accept)
            times.append(time.monotonic() - t)
        n = len(got.get("items", got.get("rows", [])))
        rows.append((f"list of {n} rulesets ({label}), best of 3", f"{min(times) * 1000:.0f} ms"))
    t = time.monotonic()
    got = c.call("GET", f"{PNR}/podnetworkrulesets?labelSelector=mnp.dev%2Fnode%3Dnode-1")
    rows.append(
        (
            f"list with a label selector ({len(got['items'])} of {count} match)",
            f"{(time.monotonic() - t) * 1000:.0f} ms",
        )
    )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--watchers", type=int, default=10)
    p.add_argument("--list", type=int, default=10_000)
    p.add_argument("--memory", type=int, default=100_000)
    p.add_argument("--repo", type=Path, default=REPO, help="source tree the server runs from")
    args = p.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mnp-bench-apiserver-") as tmp:
        server = Server(Path(tmp) / "a", args.repo.resolve())
        try:
            rows.append(("startup to serving (empty state)", f"{server.startup * 1000:.0f} ms"))
            server.conn().call(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(CRD.read_text()),
            )
            rows.append(("RSS, empty", f"{server.rss_mb():.0f} MB"))
            rows += bench_writes(server, args.writes, args.writers, args.watchers)
            rows += bench_list(server, args.list, args.writers)
            if args.memory:
                rate = fill(server, "bench-m", args.memory, args.writers)
                rows.append(
                    (f"create rate while filling to {args.memory + args.list} objects", f"{rate:.0f} /s")
                )
                total = args.memory + args.list + args.writes
                rows.append((f"RSS with {total} rulesets stored", f"{server.rss_mb():.0f} MB"))
                db = Path(tmp) / "a" / "state.db"
                rows.append(("state.db size", f"{db.stat().st_size / 1e6:.0f} MB"))
        finally:
            server.stop()
        again = Server(Path(tmp) / "a", args.repo.resolve())
        try:
            rows.append(("restart to serving with everything above stored", f"{again.startup * 1000:.0f} ms"))
            rows.append(("RSS right after that restart", f"{again.rss_mb():.0f} MB"))
            t = time.monotonic()
            got = again.conn().call("GET", f"{PNR}/namespaces/bench-l/podnetworkrulesets")
            rows.append(
                (
                    f"first list of {len(got['items'])} rulesets after the restart (parses them)",
                    f"{(time.monotonic() - t) * 1000:.0f} ms",
                )
            )
        finally:
            again.stop()
    print("| measurement | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
