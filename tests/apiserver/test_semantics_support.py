"""Plain-HTTP helpers for the semantics tests (no tests here): raw requests and watch streams.

The semantics tests check the server's rules one by one with stdlib HTTPS calls, so a failure points
at the server and not at a client library; the fidelity tests cover the real clients.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.apiserver.conftest import ApiServer

PNR = "/apis/mnp.dev/v1alpha1"


@dataclass
class Http:
    """Raw HTTPS calls to one server with a given bearer token (the admin token by default)."""

    server: ApiServer
    token: str | None = None

    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        url, admin, ca = self.server.credentials()
        ctx = ssl.create_default_context(cadata=ca)
        host = urlsplit(url)
        return http.client.HTTPSConnection(host.hostname or "", host.port, context=ctx, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        _, admin, _ = self.server.credentials()
        token = admin if self.token is None else self.token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    def call(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
             ctype: str = "application/json", headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, Any, dict[str, str]]:
        conn = self._conn(timeout)
        if params:
            path = f"{path}?{urlencode(params)}"
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        h = self._headers(headers)
        if data is not None:
            h["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, got, _ = self.call(method, path, body, **kw)
        assert 200 <= status < 300, (method, path, status, got)
        return got

    def get(self, path: str, **kw: Any) -> Any:
        return self.ok("GET", path, **kw)

    def create(self, path: str, body: Any, **kw: Any) -> Any:
        return self.ok("POST", path, body, **kw)

    def watch(self, path: str, **params: str) -> Watch:
        conn = self._conn(30)
        conn.request("GET", f"{path}?{urlencode({'watch': 'true', **params})}", headers=self._headers(None))
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return Watch(conn, resp)


@dataclass
class Watch:
    """A background reader of one watch stream: `events` fills as lines arrive; `ended` when closed."""

    conn: http.client.HTTPSConnection
    resp: http.client.HTTPResponse
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                ev = json.loads(line)
                self.events.append((ev["type"], ev["object"]))
        except Exception:  # noqa: BLE001 - any read error on a closed stream just ends it
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and not self.ended.is_set():
            time.sleep(0.01)
        time.sleep(0.05)
        return list(self.events)

    def names(self) -> list[tuple[str, str]]:
        return [(t, o.get("metadata", {}).get("name", "")) for t, o in self.events if t != "BOOKMARK"]

    def close(self) -> None:
        # shutdown() first: it wakes the reader thread, which close() alone would wait for.
        if self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def crd(group: str, plural: str, kind: str, *, scope: str = "Namespaced", versions: tuple[str, ...] = ("v1",),
        status: bool = True, schema: dict[str, Any] | None = None, short: tuple[str, ...] = (),
        categories: tuple[str, ...] = (), columns: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CRD body; the default schema has spec.size (integer 1..10) and spec.color (enum)."""
    schema = schema or {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}
    vs = []
    for n, v in enumerate(versions):
        ver: dict[str, Any] = {"name": v, "served": True, "storage": n == 0, "schema": {"openAPIV3Schema": schema}}
        if status:
            ver["subresources"] = {"status": {}}
        if columns is not None:
            ver["additionalPrinterColumns"] = columns
        vs.append(ver)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope, "versions": vs,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "shortNames": list(short), "categories": list(categories)}}}


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def install(h: Http, body: dict[str, Any]) -> dict[str, Any]:
    return h.create(CRDS, body)  # type: ignore[no-any-return]


def namespace(h: Http, name: str) -> str:
    h.create("/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, **meta},
            "spec": {"size": size}}


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def iter_names(items: list[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield item["metadata"]["name"]
