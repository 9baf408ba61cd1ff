"""The real local API server, in this process, for mnp.kube's tests; restartable on its dir and port.

Each test runs its own event loop (`run`) and its own `Client` from the kubeconfig the server wrote,
and isolates itself in a fresh namespace; the server is stopped at teardown even when a test failed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mnp.kube.client import CRDS, NAMESPACES, Client
from mnp.local.apiserver import server as apiserver

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid() % 10000}-{next(_names)}"


@dataclass
class LocalServer:
    """`mnp.local.apiserver.server.start` over one directory; `restart` keeps the port."""

    dir: Path
    running: apiserver.Running | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def address(self) -> str:
        assert self.running is not None
        return self.running.url.removeprefix("https://")

    def start(self, address: str = "127.0.0.1:0") -> None:
        self.running = apiserver.start(self.dir, address)

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()

    def restart(self) -> None:
        address = self.address
        self.stop()
        self.start(address)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    s = LocalServer(tmp_path / "api")
    s.dir.mkdir()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def run(server: LocalServer, body: Callable[[Client, str], Awaitable[T]], **options: Any) -> T:
    """body(client, namespace) in a fresh loop, with a fresh client and namespace."""

    async def main() -> T:
        client = await Client.from_kubeconfig(server.kubeconfig, **options)
        try:
            ns = unique("kube")
            await client.create(NAMESPACES, {"metadata": {"name": ns}})
            return await body(client, ns)
        finally:
            await client.close()

    return asyncio.run(main())


async def faults(client: Client, spec: dict[str, Any]) -> None:
    """Set the server's fault switches (admin token: the kubeconfig's)."""
    await client.request("POST", "/mnp-admin/faults", body=spec)


async def install_crds(client: Client) -> None:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                await client.create(CRDS, doc)
                await established(client, doc["metadata"]["name"])


async def established(client: Client, name: str, timeout: float = 10.0) -> None:
    async def ready() -> bool:
        crd = await client.get(CRDS, name)
        conds = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    await eventually(ready, timeout, f"CRD {name} Established")


async def eventually(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll until predicate() is truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def configmap(name: str, namespace: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "data": data,
    }
