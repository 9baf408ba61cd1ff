"""The HTTP endpoints a kubelet and Prometheus poll: /healthz (liveness), /readyz, /metrics.

A small threading HTTP server in a daemon thread, so probes are answered while the process's own loop
is busy. The checks are callables of the owner: True is good, False or a reason text is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import socketserver
import threading
from collections.abc import Callable, Coroutine, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from mnp.api.errors import InvalidInput
from mnp.obs.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

# A check answers True (good), False (bad, for no stated reason) or a text saying what is wrong.
Check = Callable[[], bool | str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang on a node whose DNS
        # is not up yet; the probes need no server name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """Serves /healthz (200 or 500), /readyz (200 or 503) and /metrics on `address` ("host:port").

    Port 0 binds a free port; `start()` returns the port bound. A check that raises counts as failing
    with the exception as its reason.
    """

    def __init__(
        self,
        address: str,
        metrics_render: Callable[[], bytes],
        ready: Check,
        healthy: Check = lambda: True,
    ) -> None:
        self.host, self.port = parse_address(address)
        self._metrics_render = metrics_render
        self._ready = ready
        self._healthy = healthy
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve in a daemon thread; returns the bound port."""
        if self._server is not None:
            return self.port
        ipv6 = ":" in self.host
        server = (_Server6 if ipv6 else _Server)((self.host, self.port), self._handler())
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="mnp-health", daemon=True
        )
        self._thread.start()
        log.info("health server listening", extra={"address": f"{self.host}:{self.port}"})
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._check(owner._healthy, failing=500)
                elif path == "/readyz":
                    self._check(owner._ready, failing=503)
                elif path == "/metrics":
                    try:
                        body = owner._metrics_render()
                    except Exception as e:  # a broken collector must not take the server down
                        log.exception("metrics render failed")
                        self._send(500, f"metrics: {e}\n".encode())
                    else:
                        self._send(200, body, CONTENT_TYPE)
                else:
                    self._send(404, b"not found\n")

            def _check(self, check: Check, failing: int) -> None:
                good, reason = run_check(check)
                self._send(200 if good else failing, f"{reason}\n".encode())

            def _send(
                self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                # Probes arrive every few seconds: a line each on stderr would drown the real logs.
                log.debug("health request", extra={"request": format % args})

        return Handler


def run_check(check: Check) -> tuple[bool, str]:
    """(good, text) of one check: ("ok") when it returns True, else its reason or "not ok"."""
    try:
        result = check()
    except Exception as e:
        log.warning("health check raised", exc_info=True)
        return False, f"check failed: {e}"
    if result is True:
        return True, "ok"
    return False, result if isinstance(result, str) and result else "not ok"


def parse_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port", "[v6]:port" or ":port" (every IPv4 address)."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        number = int(port)
        if not sep or not 0 <= number <= 65535 or (":" in host and not bracketed):
            raise ValueError(port)
        if bracketed:
            ipaddress.IPv6Address(host)
    except ValueError:
        raise InvalidInput("", f"listen address {address!r}: expected HOST:PORT or [IPv6]:PORT") from None
    return host, number


__all__ = ["Check", "HealthServer", "parse_address", "run_check"]


def start_servers(
    addresses: Iterable[str], metrics_render: Callable[[], bytes], ready: Check
) -> list[HealthServer]:
    """One HealthServer per distinct non-empty address (health and metrics may share one), started."""
    servers = []
    for address in dict.fromkeys(a for a in addresses if a):
        server = HealthServer(address, metrics_render, ready)
        try:
            server.start()
        except OSError as e:
            # Serving goes on without these endpoints: probes against them will fail and say so. (On
            # the local cluster every node's hostNetwork agent shares the machine's ports.)
            log.error("health and metrics endpoints not served", extra={"address": address, "error": str(e)})
            continue
        servers.append(server)
    return servers


async def run_until_signalled(main: Coroutine[Any, Any, None], servers: Iterable[HealthServer]) -> None:
    """Run `main` until it ends or SIGTERM/SIGINT cancels it; then stop the servers."""
    task = asyncio.create_task(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for server in servers:
            server.stop()
