"""The API server from inside a pod, as on a real cluster, and `mnp` on the containers' PATH.

The kubelet's per-pod proxy (mnp.local.kubelet.apiproxy) is tested directly in a netns of the test's
own (bytes both ways, half-close, stop with live connections, open failures), then end to end: pods
with a network namespace of their own list pods with the `kubernetes` client's in-cluster config,
and deleting them leaves no socket of theirs in the node process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster, local_cluster

from mnp.local.cluster import REPO_ROOT, ClusterError, _deploy_mnp, down, up
from mnp.local.ctl.manifests import load_manifests
from mnp.local.kubelet.apiproxy import ApiProxy, ApiProxyError
from mnp.local.layout import Layout
from mnp.local.nodes.netns import call_in_netns, create_netns, delete_netns, netns_path

pytestmark = pytest.mark.kernel


# ---- the proxy on its own ------------------------------------------------------------------------


@pytest.fixture
def netns(unique_prefix: str) -> Iterator[str]:
    name = f"{unique_prefix}px"
    path = create_netns(name)
    try:
        yield path
    finally:
        delete_netns(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def connect_in(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to 127.0.0.1:port made from inside `netns` (the socket is created there)."""
    sock = call_in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def listening_in(netns: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", "--", "ss", "-Hltn"], capture_output=True, text=True, check=True
    ).stdout


async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The upstream: reads everything until the client's EOF, then answers and closes."""
    data = await reader.read()
    writer.write(b"got %d bytes:" % len(data) + data[-16:])
    await writer.drain()
    writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_the_proxy_pipes_both_ways_with_half_close(netns: str) -> None:
    async def main() -> None:
        upstream = await asyncio.start_server(answer_after_eof, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = ApiProxy(netns, port, ("127.0.0.1", port), "test/pod")
        await proxy.start()
        try:
            assert f"127.0.0.1:{port}" in listening_in(netns)
            payload = os.urandom(4 * 1024 * 1024) + b"the end"

            async def one() -> bytes:
                reader, writer = await connect_in(netns, port)
                writer.write(payload)
                await writer.drain()
                writer.write_eof()  # half-close: the answer comes only after this EOF went through
                answer = await reader.read()
                writer.close()
                return answer

            answers = await asyncio.gather(*(one() for _ in range(5)))
            assert answers == [b"got %d bytes:" % len(payload) + payload[-16:]] * 5
            for _ in range(100):
                if proxy.connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert proxy.connections == 0
        finally:
            await proxy.stop()
            upstream.close()
            await upstream.wait_closed()
        assert listening_in(netns) == ""

    asyncio.run(main())


def test_stop_closes_the_listener_and_live_connections(netns: str) -> None:
    async def main() -> None:
        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = ApiProxy(netns, port, ("127.0.0.1", port))
        await proxy.start()
        try:
            live = [await connect_in(netns, port) for _ in range(3)]
            for reader, writer in live:
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
            assert proxy.connections == 3
            await proxy.stop()
            assert proxy.connections == 0 and not proxy.serving
            for reader, writer in live:
                with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                    await asyncio.wait_for(reader.readexactly(1), 5)
                writer.close()
            assert listening_in(netns) == ""
            with pytest.raises(ConnectionRefusedError):
                await connect_in(netns, port)
            await proxy.stop()  # idempotent
        finally:
            await proxy.stop()
            upstream.close()
            await upstream.wait_closed()

    asyncio.run(main())


def test_an_unreachable_api_server_closes_the_connection_and_the_proxy_goes_on(netns: str) -> None:
    async def main() -> None:
        port = free_port()  # nothing listens there in the root netns
        proxy = ApiProxy(netns, port, ("127.0.0.1", port))
        await proxy.start()
        try:
            for _ in range(2):
                reader, writer = await connect_in(netns, port)
                assert await asyncio.wait_for(reader.read(), 15) == b""
                writer.close()
            assert proxy.serving
        finally:
            await proxy.stop()

    asyncio.run(main())


def test_opening_fails_with_a_clear_reason(netns: str, unique_prefix: str) -> None:
    async def main() -> None:
        port = free_port()
        taken = call_in_netns(netns, lambda: socket.create_server(("127.0.0.1", port)))
        try:
            with pytest.raises(ApiProxyError, match=rf"cannot listen on 127\.0\.0\.1:{port} in the pod's"):
                await ApiProxy(netns, port, ("127.0.0.1", port)).start()
        finally:
            taken.close()
        missing = netns_path(f"{unique_prefix}gone")
        with pytest.raises(ApiProxyError, match="cannot listen"):
            await ApiProxy(missing, port, ("127.0.0.1", port)).start()

    asyncio.run(main())


# ---- end to end ----------------------------------------------------------------------------------

LISTER_SCRIPT = (
    "import sys\n"
    "from kubernetes import client, config, watch\n"
    "config.load_incluster_config()\n"
    "api = client.CoreV1Api()\n"
    "print('PODS', sorted(p.metadata.name for p in api.list_namespaced_pod('default').items), flush=True)\n"
    "if len(sys.argv) > 1:\n"  # keep a watch open through the proxy until killed
    "    for event in watch.Watch().stream(api.list_namespaced_pod, 'default', timeout_seconds=3600):\n"
    "        pass\n"
)

RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "proxy-pod-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "proxy-pod-reader", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy-pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "proxy-lister", "namespace": "default"}],
    },
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "proxy-lister", "namespace": "default"},
    },
]


def lister(name: str, *, keep_watching: bool = False, restart: str = "Never") -> dict[str, Any]:
    argv = [sys.executable, "-c", LISTER_SCRIPT, *(["watch"] if keep_watching else [])]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "serviceAccountName": "proxy-lister",
            "restartPolicy": restart,
            "nodeName": "node-1",
            "containers": [{"name": "c", "image": "python", "command": argv}],
        },
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(nodes=1) as c:
        c.apply("\n---\n".join(json.dumps(o) for o in RBAC))
        yield c


def phase(cluster: LocalCluster, name: str) -> str:
    return str(cluster.pod(name).get("status", {}).get("phase"))


def wait_finished(cluster: LocalCluster, name: str) -> dict[str, Any]:
    cluster.wait_for(f"pod {name} to finish", lambda: phase(cluster, name) in ("Succeeded", "Failed"))
    return cluster.pod(name)


def log_of(cluster: LocalCluster, pod: dict[str, Any], container: str = "c") -> str:
    meta = pod["metadata"]
    path = cluster.layout.container_log(
        pod["spec"]["nodeName"], "default", meta["name"], meta["uid"], container, 0
    )
    return path.read_text() if path.exists() else ""


def kubelet_sockets(cluster: LocalCluster, node: str = "node-1") -> set[int]:
    """Inodes of the sockets the node process holds open."""
    pid = int(cluster.layout.pid_file(node).read_text())
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            out.add(int(m.group(1)))
    return out


def tcp_sockets_in(netns: str) -> set[int]:
    """Inodes of the TCP sockets (IPv4) of a netns, from its /proc/net/tcp."""
    text = subprocess.run(
        ["nsenter", f"--net={netns}", "--", "cat", "/proc/net/tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(line.split()[9]) for line in text.splitlines()[1:] if line.split() and line.split()[9] != "0"}


def api_port(cluster: LocalCluster) -> int:
    text = Path(cluster.kubeconfig).read_text()
    m = re.search(r"server:\s*https?://127\.0\.0\.1:(\d+)", text)
    assert m, text
    return int(m.group(1))


def test_a_pod_network_pod_lists_pods_with_in_cluster_config(cluster: LocalCluster) -> None:
    cluster.apply(json.dumps(lister("px-lister")))
    p = wait_finished(cluster, "px-lister")
    log = log_of(cluster, p)
    assert p["status"]["phase"] == "Succeeded", log
    assert "PODS [" in log and "'px-lister'" in log, log
    assert p["status"]["podIP"] != p["status"]["hostIP"]  # its own netns, not the host's
    cluster.kubectl("delete", "pod", "px-lister", "--wait=true", "--timeout=60s")


def test_mnp_is_on_the_path_of_containers_and_the_pods_env_overrides_it(cluster: LocalCluster) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "px-path", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": "node-1",
            "containers": [
                {"name": "mnp", "image": "mnp", "command": ["mnp", "--help"]},
                {"name": "env", "image": "sh", "command": ["sh", "-c", 'echo "PATH=$PATH"; command -v mnp']},
                {
                    "name": "own",
                    "image": "sh",
                    "command": ["/bin/sh", "-c", 'echo "PATH=$PATH"'],
                    "env": [{"name": "PATH", "value": "/usr/bin:/bin"}],
                },
            ],
        },
    }
    cluster.apply(json.dumps(pod))
    p = wait_finished(cluster, "px-path")
    logs = {c: log_of(cluster, p, c) for c in ("mnp", "env", "own")}
    assert p["status"]["phase"] == "Succeeded", logs
    scripts = str(Path(sys.executable).parent)
    assert "usage" in logs["mnp"].lower(), logs
    assert f"PATH={scripts}:/usr/local/sbin:" in logs["env"], logs
    assert f"{scripts}/mnp" in logs["env"], logs
    assert "PATH=/usr/bin:/bin\n" in logs["own"], logs
    cluster.kubectl("delete", "pod", "px-path", "--wait=true", "--timeout=60s")


def test_deleting_pods_with_live_api_connections_leaves_no_proxy_socket(cluster: LocalCluster) -> None:
    names = [f"px-watch-{i}" for i in range(5)]
    cluster.apply("\n---\n".join(json.dumps(lister(n, keep_watching=True, restart="Always")) for n in names))
    pods = cluster.wait_running(*names)
    cluster.wait_for(
        "every watcher to have listed pods",
        lambda: all("PODS [" in log_of(cluster, cluster.pod(n)) for n in names),
    )
    port = api_port(cluster)
    held: set[int] = set()
    for name in names:
        netns = cluster.netns_of(pods[name])
        assert f"127.0.0.1:{port}" in listening_in(netns)
        # The listener and the accepted end of the watch are the node process's, in the pod's netns.
        ours = tcp_sockets_in(netns) & kubelet_sockets(cluster)
        assert len(ours) >= 2, (name, ours)
        held |= ours
    cluster.kubectl("delete", "pod", *names, "--wait=true", "--timeout=60s")
    left = held & kubelet_sockets(cluster)
    assert not left, f"the node process still holds proxy sockets {left}"
    node_log = cluster.layout.log_file("node-1").read_text()
    for bad in ("pod sync failed", "Task was destroyed", "Traceback", "API server proxy connection failed"):
        assert bad not in node_log, node_log[-3000:]
    # The node goes on: a new pod reaches the API server the same way.
    cluster.apply(json.dumps(lister("px-after")))
    p = wait_finished(cluster, "px-after")
    assert p["status"]["phase"] == "Succeeded", log_of(cluster, p)
    cluster.kubectl("delete", "pod", "px-after", "--wait=true", "--timeout=60s")


# ---- up(deploy=True): mnp itself ------------------------------------------------------------------


def test_deploying_a_repo_without_deploy_manifests_applies_the_crds_only(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "deploy").mkdir()
    for f in (REPO_ROOT / "crds").glob("*.yaml"):
        (tmp_path / "crds" / f.name).write_text(f.read_text())
    said: list[str] = []
    asyncio.run(_deploy_mnp(cluster.layout, tmp_path, said.append))
    assert any("has no manifests: applying the CRDs only" in s for s in said), said
    for crd in crd_names():
        conditions = json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)["status"][
            "conditions"
        ]
        assert {"type": "Established", "status": "True"} in [
            {"type": c["type"], "status": c["status"]} for c in conditions
        ]
    assert cluster.kubectl("get", "namespace", "mnp-system", check=False).returncode != 0
    with pytest.raises(ClusterError, match="no CRDs in"):
        asyncio.run(_deploy_mnp(cluster.layout, tmp_path / "deploy", said.append))


def crd_names() -> list[str]:
    return [m.name for m in load_manifests([str(REPO_ROOT / "crds")])]


def test_up_with_deploy_applies_the_crds_and_mnp() -> None:
    root = Path(tempfile.mkdtemp(prefix="mnp-", dir="/tmp"))
    layout = Layout.at(root)
    c = LocalCluster(layout)
    said: list[str] = []
    try:
        up(layout, 1, said.append, deploy=True)
        for crd in crd_names():
            assert c.kubectl("get", "crd", crd, check=False).returncode == 0, said
        for m in load_manifests([str(REPO_ROOT / "deploy")]):
            args = ["get", f"{m.kind.lower()}.{m.group}" if m.group else m.kind.lower(), m.name]
            args += ["-n", m.namespace] if m.namespace else []
            assert c.kubectl(*args, check=False).returncode == 0, (m.display(), said)
        assert any("serverside-applied" in s for s in said), said
    finally:
        down(layout)
        left = c.leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left behind by the cluster in {root}: {left}"
