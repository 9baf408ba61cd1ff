"""A lean HTTP/1.1 client for the API server's one-shot requests: asyncio streams and a keep-alive pool.

Why not kr8s's httpx session for these: under a burst, each request through httpx, httpcore and anyio
cost the agent and the controller ~1-1.5 ms of CPU before any JSON (the pool scans every connection,
anyio wraps every TLS read and write), several times the request itself; a node agent makes one such
request per ruleset it applies. kr8s still supplies what a client must get right: server, credentials
(kubeconfig, service account, exec plugins, rotated tokens) and the TLS context. Watches and anything
through a proxy stay on kr8s's session.

A request is sent on an idle kept-alive connection if one is left, else on a new one. A reused
connection that the server closed before answering (an idle keep-alive timeout racing our request)
gets the request once more on a new connection: nothing was answered, so nothing was done twice that
the API server would not refuse (a create sent again is AlreadyExists).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

MAX_IDLE = 32  # connections kept alive between requests
MAX_HEADER_LINES = 200
MAX_LINE = 1 << 16
_PATH_SAFE = "/:@-._~!$&'()*+,;=%"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.1 as this client reads it (treated like a broken connection)."""


class _Closed(OSError):
    """A reused connection was closed by the server before any byte of the answer."""


class Http11:
    """Requests to one server (`https://host:port` or `http://host:port`), headers and TLS given."""

    def __init__(self, server: str, tls: ssl.SSLContext | None, server_name: str | None = None) -> None:
        url = urlsplit(server)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"server {server!r}: expected https://HOST[:PORT] or http://HOST[:PORT]")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")  # a server URL may carry a path (behind a gateway)
        self.tls = tls if url.scheme == "https" else None
        self.server_name = server_name or self.host
        self.authority = url.netloc.rsplit("@", 1)[-1]
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Answer:
        """One request and its whole answer. Raises OSError (ssl.SSLError included) or TimeoutError."""
        target = quote(self.prefix + path, safe=_PATH_SAFE)
        if params:
            target += "?" + urlencode(params)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        message = head + body if body else head
        async with asyncio.timeout(timeout):
            reader, writer, reused = await self._connection()
            try:
                try:
                    answer, keep = await self._exchange(reader, writer, message, reused)
                except _Closed:
                    writer.close()
                    reader, writer, _ = await self._connection(fresh=True)
                    answer, keep = await self._exchange(reader, writer, message, False)
            except BaseException:
                writer.close()  # whichever connection failed: a half-read answer must not be reused
                raise
        if keep and len(self._idle) < MAX_IDLE:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return answer

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def _connection(
        self, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while self._idle and not fresh:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()  # closed by the server while idle
                continue
            return reader, writer, True
        reader, writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.tls,
            server_hostname=self.server_name if self.tls else None,
            limit=MAX_LINE,
        )
        return reader, writer, False

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes, reused: bool
    ) -> tuple[Answer, bool]:
        writer.write(message)
        try:
            await writer.drain()
            status_line = await reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            if reused:
                raise _Closed() from None
            raise
        if not status_line:
            if reused:
                raise _Closed()
            raise ProtocolError("the server closed the connection without an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ProtocolError("the connection closed inside the answer's header")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"not a header field: {line[:80]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        else:
            raise ProtocolError(f"more than {MAX_HEADER_LINES} header fields")
        keep = parts[0] == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _chunked(reader)
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise ProtocolError(f"Content-Length {length!r}")
            body = await reader.readexactly(int(length))
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()  # delimited by the end of the connection
            keep = False
        return Answer(status, headers, body), keep


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (RFC 9112 §7.1); trailer fields are read and dropped."""
    parts: list[bytes] = []
    while True:
        line = await reader.readline()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"not a chunk size: {line[:80]!r}") from None
        if size == 0:
            while (trailer := await reader.readline()) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise ProtocolError("the connection closed inside the answer's trailer")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readline() not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk does not end with CRLF")


__all__ = ["Answer", "Http11", "ProtocolError"]
