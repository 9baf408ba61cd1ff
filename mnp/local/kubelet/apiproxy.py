"""The API server inside a pod's network namespace, as on a real cluster: a TCP proxy per pod.

The local API server listens on the machine's loopback (root netns); a process in a pod netns has a
loopback of its own. So for each pod with a netns of its own the kubelet listens on
`127.0.0.1:<API port>` INSIDE that netns (the socket is made on a thread that setns'd there, and stays
there) and serves it from its asyncio loop: each accepted connection is connected to the API server
from the kubelet's own netns and the bytes are piped both ways, TLS untouched (the serving certificate
is valid for 127.0.0.1). `KUBERNETES_SERVICE_HOST/PORT` and in-cluster config then work unchanged.

The listener and every accepted socket hold the pod netns open, so `stop()` (stop accepting, close the
listener, abort live connections and wait for their tasks) comes before the sandbox is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from mnp.local.nodes.netns import call_in_netns

log = logging.getLogger(__name__)

LISTEN_HOST = "127.0.0.1"
BACKLOG = 128
CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
ACCEPT_RETRY_S = 0.5


class ApiProxyError(Exception):
    """The proxy's listening socket could not be opened in the pod's netns."""


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _abort(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.transport.abort()  # a no-op once the transport is closed


async def _one_way(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, writers: list[asyncio.StreamWriter]
) -> None:
    """reader → writer until EOF, then half-close writer; on an error both sides are aborted."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # the other direction goes on until its own EOF
    except Exception as e:
        _abort(writers)  # the other direction then reads EOF and ends too
        if not isinstance(e, OSError):
            raise


class ApiProxy:
    """`127.0.0.1:port` in the netns at `netns`, forwarded to `target` from the caller's netns."""

    def __init__(self, netns: str, port: int, target: tuple[str, int], name: str = "") -> None:
        self.netns = netns
        self.port = port
        self.target = target
        self.name = name or netns
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """How many connections are being served now."""
        return len(self._connections)

    @property
    def serving(self) -> bool:
        return self._accepting is not None

    async def start(self) -> None:
        """Listen in the netns and serve; ApiProxyError says why it cannot (the pod cannot be set up)."""
        if self._accepting is not None:
            return
        try:
            listener = await asyncio.to_thread(
                call_in_netns, self.netns, lambda: _listen(LISTEN_HOST, self.port)
            )
        except Exception as e:  # NetnsError, or OSError from socket/bind/listen
            raise ApiProxyError(
                f"cannot listen on {LISTEN_HOST}:{self.port} in the pod's network namespace {self.netns} "
                f"(the API server proxy): {e}"
            ) from None
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept(listener), name=f"api proxy {self.name}")

    async def stop(self) -> None:
        """Stop accepting, close the listener, abort live connections; returns when no socket is left.

        The accept loop is cancelled and awaited before its socket is closed, so the event loop never
        polls a closed (possibly reused) descriptor.
        """
        accepting, self._accepting = self._accepting, None
        if accepting is not None:
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        while self._connections:
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._connections.difference_update(tasks)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as e:  # EMFILE, ENOBUFS...: keep the listener, try again shortly
                log.warning("API server proxy accept failed", extra={"pod": self.name, "error": str(e)})
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            task = asyncio.create_task(self._serve(conn), name=f"api proxy {self.name} connection")
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket) -> None:
        writers: list[asyncio.StreamWriter] = []
        try:
            client_r, client_w = await asyncio.open_connection(sock=conn)
            writers.append(client_w)
            try:
                upstream_r, upstream_w = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as e:
                log.warning(
                    "API server proxy cannot reach the API server",
                    extra={"pod": self.name, "target": f"{self.target[0]}:{self.target[1]}", "error": str(e)},
                )
                return
            writers.append(upstream_w)
            results = await asyncio.gather(
                _one_way(client_r, upstream_w, writers),
                _one_way(upstream_r, client_w, writers),
                return_exceptions=True,
            )
            for r in results:
                if isinstance(r, Exception):
                    log.warning(
                        "API server proxy connection failed", extra={"pod": self.name, "error": repr(r)}
                    )
            for w in writers:
                w.close()  # both directions ended: flush what is queued, then close
            for w in writers:
                with contextlib.suppress(Exception):
                    await w.wait_closed()
        finally:
            if not writers:
                conn.close()
            _abort(writers)  # after an error or a cancel (stop) drop what is queued; else a no-op


__all__ = ["LISTEN_HOST", "ApiProxy", "ApiProxyError"]
