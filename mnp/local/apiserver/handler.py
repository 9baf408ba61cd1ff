"""HTTPS transport: a threading HTTP/1.1 server whose handler parses requests for `App` and writes its
responses (Content-Length bodies, or chunked NDJSON for watches).

The TLS handshake runs in the connection's own thread, so a slow client cannot stall accept().
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mnp.local.apiserver.app import App, Request, Response
from mnp.local.apiserver.errors import StatusError

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 3 * 1024 * 1024  # the real server's request body limit
_date: list[tuple[int, str]] = [(0, "")]  # (second, its Date header), shared by the connection threads


class ApiHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, context: ssl.SSLContext) -> None:
        self.app = app
        self.context = context
        super().__init__(address, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Small responses and watch lines must not wait for the client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHTTPServer

    def setup(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        self.request.settimeout(None)
        super().setup()

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request", extra={"client": self.client_address[0], "line": format % args})

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, formatted once per second rather than once per answer."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _date[0]
        if second != now:
            text = super().date_time_string(now)
            _date[0] = (now, text)
        return text

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # kubectl create --raw -f sends its body chunked; Go's server decodes it like any other.
            try:
                chunked = self._read_chunked()
            except ValueError:
                self._send(Response(400, StatusError(400, "malformed chunked request body").status()))
                self.close_connection = True
                return
            if chunked is None:
                message = f"Request entity too large: limit is {MAX_BODY_BYTES}"
                self._send(Response(413, StatusError(413, message, "RequestEntityTooLarge").status()))
                self.close_connection = True
                return
            self._handle(method, chunked)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Read it all anyway: a client still sending would see a reset instead of the answer.
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            message = f"Request entity too large: limit is {MAX_BODY_BYTES}"
            self._send(Response(413, StatusError(413, message, "RequestEntityTooLarge").status()))
            return
        self._handle(method, self.rfile.read(length) if length else b"")

    def _read_chunked(self) -> bytes | None:
        """A chunked request body (RFC 9112 §7.1), trailers skipped; None when it is over the limit."""
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1 << 16)
            chunk = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk == 0:
                while self.rfile.readline(1 << 16) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(parts)
            size += chunk
            if size > MAX_BODY_BYTES:
                return None
            parts.append(self.rfile.read(chunk))
            self.rfile.readline(1 << 16)  # the CRLF after the chunk

    def _handle(self, method: str, body: bytes) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        req = Request(method, url.path, query, self.headers, body)
        try:
            resp = self.server.app.handle(req)
        except StatusError as e:
            resp = Response(e.code, e.status(), headers=e.headers)
        except Exception:
            log.exception("request failed", extra={"method": method, "path": url.path})
            resp = Response(500, StatusError(500, "internal error in the local API server").status())
        if resp.stream is not None:
            self._stream(resp)
        else:
            self._send(resp)

    def _send(self, resp: Response) -> None:
        body = (
            resp.body
            if isinstance(resp.body, bytes)
            else json.dumps(resp.body, separators=(",", ":")).encode()
        )
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        # Headers and body in one write: one TLS record and one segment per small answer.
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        self.flush_headers()

    def _client_gone(self) -> bool:
        """True once the client closed its end (watch clients never send anything after the request)."""
        sock = self.request
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return bool(sock.recv(1) == b"")
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.setblocking(True)

    def _stream(self, resp: Response) -> None:
        assert resp.stream is not None
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in resp.stream:
                if not chunk:
                    if self._client_gone():
                        self.close_connection = True
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            # A watch that ended (timeout, drop) leaves the connection usable, as on the real server.
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            # Headers are out, so no Status can follow: end the stream; the client re-watches.
            log.exception("watch stream failed", extra={"path": self.path})
            self.close_connection = True
        finally:
            close = getattr(resp.stream, "close", None)
            if close is not None:
                close()
