"""`mnp local apiserver`: assemble storage, catalog, watch hub and HTTPS transport, serve in the
foreground until SIGTERM/SIGINT, and announce readiness by writing DIR/kubeconfig atomically.
"""

from __future__ import annotations

import datetime
import logging
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mnp.local.apiserver import tls
from mnp.local.apiserver.app import App
from mnp.local.apiserver.catalog import Catalog
from mnp.local.apiserver.faults import Faults
from mnp.local.apiserver.handler import ApiHTTPServer
from mnp.local.apiserver.objects import Store
from mnp.local.apiserver.storage import Storage
from mnp.local.apiserver.watch import WatchHub

log = logging.getLogger(__name__)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass
class Running:
    """A started server; `stop()` ends watches, closes the socket and the database."""

    httpd: ApiHTTPServer
    store: Store
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.store.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        with self.store.lock:
            self.store.storage.close()


def start(directory: Path, address: str = "127.0.0.1:0") -> Running:
    """Start serving from `directory` and write its kubeconfig once the socket accepts requests."""
    host, port = parse_address(address)
    creds = tls.ensure_credentials(directory)
    # A kubeconfig left by an earlier run would announce readiness too early (and maybe the wrong port).
    (directory / "kubeconfig").unlink(missing_ok=True)
    storage = Storage(directory / "state.db")
    catalog = Catalog()
    hub = WatchHub(storage.rv)
    store = Store(storage, catalog, hub, utc_now)
    store.lifecycle.start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(creds.cert_file, creds.key_file)
    context.set_alpn_protocols(["http/1.1"])
    # The real port is known only after bind (PORT 0), so the App learns its address afterwards.
    app = App(store, catalog, Faults(), creds, "")
    httpd = ApiHTTPServer((host, port), app, context)
    bound = httpd.server_address[1]
    app.address = f"{host}:{bound}"
    url = f"https://{host}:{bound}"
    thread = threading.Thread(target=httpd.serve_forever, name="apiserver", daemon=True)
    thread.start()
    tls.write_kubeconfig(directory / "kubeconfig", tls.kubeconfig(url, creds.ca_pem, creds.admin_token))
    log.info(
        "apiserver serving",
        extra={"url": url, "dir": str(directory), "objects": storage.count(), "resource_version": storage.rv},
    )
    return Running(httpd, store, thread, url)


def run(directory: Path, address: str = "127.0.0.1:0") -> int:
    """Serve in the foreground until SIGTERM or SIGINT; returns the exit status."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        running = start(directory, address)
    except (OSError, ValueError) as e:
        print(f"error: mnp local apiserver cannot start on {address} with {directory}: {e}", file=sys.stderr)
        return 1
    print(f"mnp local apiserver: serving on {running.url}, kubeconfig {directory / 'kubeconfig'}", flush=True)
    stop.wait()
    running.stop()
    log.info("apiserver stopped")
    return 0
