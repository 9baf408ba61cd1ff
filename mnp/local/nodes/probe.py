"""Real traffic between network namespaces: does a TCP/UDP payload or a ping get through?

Sockets are opened inside the client's and the server's netns (on a thread that entered it) and then
driven from the caller's thread, so a probe starts no process and leaves nothing behind. Many probes
run at once in one event loop; each carries its own token, so a verdict never depends on another
probe's packet. A denied probe costs its timeout, an allowed one a few milliseconds.
"""

from __future__ import annotations

import errno
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from types import TracebackType

from mnp.local.nodes.netns import call_in_netns, resolve_netns, run_in_netns

PROTOCOLS = ("tcp", "udp")
UDP_RESEND_S = 0.05


@dataclass(frozen=True, slots=True)
class Probe:
    """One flow: from `client` netns (optionally from address `src`) to `dst`:`port` served in `server`."""

    client: str
    server: str
    dst: str
    port: int
    proto: str = "tcp"
    src: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A service to probe in a connectivity matrix: a label, the server netns, address, port, protocol."""

    name: str
    netns: str
    dst: str
    port: int
    proto: str = "tcp"


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _kind(proto: str) -> socket.SocketKind:
    if proto not in PROTOCOLS:
        raise ValueError(f"protocol {proto!r} is not one of {PROTOCOLS}")
    return socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM


def _server_socket(netns: str, dst: str, port: int, proto: str, backlog: int = 64) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(_family(dst), _kind(proto))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((dst, port))
            if proto == "tcp":
                s.listen(backlog)
        except BaseException:
            s.close()
            raise
        return s

    return call_in_netns(netns, make)


def _client_socket(netns: str, dst: str, proto: str, src: str | None) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(_family(dst), _kind(proto))
        try:
            if src is not None:
                s.bind((src, 0))
        except BaseException:
            s.close()
            raise
        return s

    return call_in_netns(netns, make)


def probe_all(probes: Sequence[Probe], timeout: float = 0.5) -> list[bool]:
    """For each probe, True iff its payload reached the server (TCP: connect + data; UDP: datagram).

    All probes run concurrently; probes to the same server address, port and protocol share one
    listener. The call returns as soon as every payload arrived, else after `timeout` seconds.
    """
    if not probes:
        return []
    tokens = [b"mnp-%d-%s\n" % (i, secrets.token_hex(6).encode()) for i in range(len(probes))]
    by_token = {t.strip(): i for i, t in enumerate(tokens)}
    arrived = [False] * len(probes)
    with ExitStack() as stack, selectors.DefaultSelector() as sel:
        listeners: dict[tuple[str, str, int, str], socket.socket] = {}
        for p in probes:
            key = (resolve_netns(p.server), p.dst, p.port, p.proto)
            if key not in listeners:
                s = stack.enter_context(_server_socket(key[0], p.dst, p.port, p.proto))
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, ("listen", p.proto))
                listeners[key] = s
        pending_udp: list[tuple[socket.socket, int]] = []
        for i, p in enumerate(probes):
            c = stack.enter_context(_client_socket(p.client, p.dst, p.proto, p.src))
            c.setblocking(False)
            if p.proto == "tcp":
                rc = c.connect_ex((p.dst, p.port))
                if rc in (0, errno.EINPROGRESS):
                    sel.register(c, selectors.EVENT_WRITE, ("connect", i))
            else:
                pending_udp.append((c, i))
        buffers: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while not all(arrived):
            now = time.monotonic()
            if now >= deadline:
                break
            if pending_udp and now >= next_send:
                # Resending is harmless (the token is the same) and survives a datagram queued
                # behind neighbour resolution that the kernel happened to drop.
                for c, i in pending_udp:
                    if not arrived[i]:
                        with suppress(OSError):  # EPERM from an output drop: the payload did not leave
                            c.sendto(tokens[i], (probes[i].dst, probes[i].port))
                next_send = now + UDP_RESEND_S
            wait = min(deadline, next_send) - now if pending_udp else deadline - now
            for ready, _ in sel.select(max(wait, 0.0)):
                sock = ready.fileobj
                assert isinstance(sock, socket.socket)
                role, info = ready.data
                if role == "connect":
                    sel.unregister(sock)
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        with suppress(OSError):
                            sock.send(tokens[info])
                elif role == "listen" and info == "tcp":
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        continue
                    stack.enter_context(conn)
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, ("data", None))
                    buffers[conn] = b""
                else:
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if role == "data":
                        if not data:
                            sel.unregister(sock)
                        data = buffers[sock] = buffers[sock] + data
                    for line in data.split(b"\n"):
                        hit = by_token.get(line)
                        if hit is not None:
                            arrived[hit] = True
    return arrived


def probe(
    client_netns: str,
    server_netns: str,
    dst: str,
    port: int,
    proto: str = "tcp",
    timeout: float = 0.5,
    src: str | None = None,
) -> bool:
    """True iff a payload from `client_netns` (from `src` if given) reaches a listener on dst:port."""
    return probe_all([Probe(client_netns, server_netns, dst, port, proto, src)], timeout)[0]


def ping(client_netns: str, dst: str, timeout: float = 0.5, src: str | None = None) -> bool:
    """True iff one ICMP (v6: ICMPv6) echo from `client_netns` to `dst` is answered within `timeout`."""
    argv = ["ping", "-6" if ":" in dst else "-4", "-n", "-q", "-c", "1", "-W", f"{timeout:g}"]
    if src is not None:
        argv += ["-I", src]
    proc = run_in_netns(client_netns, [*argv, dst], capture_output=True, timeout=timeout + 5, check=False)
    return proc.returncode == 0


def connectivity_matrix(
    pods: Mapping[str, str], targets: Sequence[Target], timeout: float = 0.5
) -> dict[tuple[str, str], bool]:
    """{(client name, target name): reached?} for every client netns in `pods` and every target."""
    cells = [(c, t) for c in pods for t in targets]
    verdicts = probe_all([Probe(pods[c], t.netns, t.dst, t.port, t.proto) for c, t in cells], timeout)
    return {(c, t.name): v for (c, t), v in zip(cells, verdicts, strict=True)}


def format_matrix(matrix: Mapping[tuple[str, str], bool]) -> str:
    """The matrix as a text table: clients down, targets across, ✔ reached, · not."""
    clients = list(dict.fromkeys(c for c, _ in matrix))
    targets = list(dict.fromkeys(t for _, t in matrix))
    width = max([len(c) for c in clients] + [4])
    head = " " * width + " | " + " | ".join(targets)
    rows = [head, "-" * len(head)]
    for c in clients:
        cells = [("✔" if matrix.get((c, t)) else "·").center(len(t)) for t in targets]
        rows.append(c.ljust(width) + " | " + " | ".join(cells))
    return "\n".join(rows)


class Connection:
    """A long-lived flow between two netns; `roundtrip` proves data passes both ways right now."""

    def __init__(
        self, client: socket.socket, server: socket.socket, proto: str, peer: tuple[str, int]
    ) -> None:
        self._client = client
        self._server = server  # TCP: the accepted socket; UDP: the listener, replying to `peer`
        self._proto = proto
        self._peer = peer
        self._bufs: dict[int, bytes] = {client.fileno(): b"", server.fileno(): b""}

    def client_to_server(self, timeout: float = 0.5) -> bool:
        """Send a fresh token from client to server; True iff it arrives within `timeout`."""
        return self._send(self._client, self._server, None, timeout)

    def server_to_client(self, timeout: float = 0.5) -> bool:
        """Send a fresh token from server to client (a reply in conntrack's eyes)."""
        return self._send(self._server, self._client, self._peer if self._proto == "udp" else None, timeout)

    def roundtrip(self, timeout: float = 0.5) -> bool:
        return self.client_to_server(timeout) and self.server_to_client(timeout)

    def _send(
        self, sender: socket.socket, receiver: socket.socket, to: tuple[str, int] | None, timeout: float
    ) -> bool:
        token = b"mnp-flow-%s\n" % secrets.token_hex(6).encode()
        try:
            if to is None:
                sender.sendall(token)
            else:
                sender.sendto(token, to)
        except OSError:
            return False
        fd = receiver.fileno()
        deadline = time.monotonic() + timeout
        while token not in self._bufs[fd]:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            receiver.settimeout(left)
            try:
                data = receiver.recv(4096)
            except (TimeoutError, BlockingIOError):
                return False
            except OSError:
                return False
            if not data and self._proto == "tcp":
                return False
            self._bufs[fd] += data
        # Keep what came after the token (a late earlier token is discarded with what precedes it).
        self._bufs[fd] = self._bufs[fd].split(token, 1)[1]
        return True

    def close(self) -> None:
        self._client.close()
        if self._proto == "tcp":
            self._server.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Listener:
    """A listening TCP or UDP socket in a server netns, for flows that must outlive one probe."""

    def __init__(self, server_netns: str, addr: str, port: int, proto: str = "tcp") -> None:
        self.server_netns = server_netns
        self.addr = addr
        self.port = port
        self.proto = proto
        self._sock = _server_socket(server_netns, addr, port, proto)
        self._conns: list[Connection] = []

    def connect(self, client_netns: str, src: str | None = None, timeout: float = 1.0) -> Connection:
        """Open a flow from `client_netns`; raises ConnectionError if it cannot be established."""
        client = _client_socket(client_netns, self.addr, self.proto, src)
        try:
            client.settimeout(timeout)
            self._sock.settimeout(timeout)
            client.connect((self.addr, self.port))
            if self.proto == "tcp":
                server, peer = self._sock.accept()
            else:
                hello = b"mnp-hello-%s" % secrets.token_hex(6).encode()
                client.send(hello)
                while True:
                    data, peer = self._sock.recvfrom(4096)
                    if data == hello:
                        break
                server = self._sock
        except OSError as e:
            client.close()
            raise ConnectionError(
                f"{self.proto} flow from {client_netns} to {self.addr}:{self.port} not established: {e}"
            ) from e
        conn = Connection(client, server, self.proto, (peer[0], peer[1]))
        self._conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class UdpStream:
    """Datagrams sent from client to server every `interval` on a background thread, and counted.

    Used to watch a flow across ruleset changes: `stop()` returns (sent, received); a denied flow
    must show received == 0 however many datagrams were sent.
    """

    def __init__(
        self, client_netns: str, server_netns: str, dst: str, port: int, interval: float = 0.002
    ) -> None:
        self._listener = _server_socket(server_netns, dst, port, "udp")
        try:
            self._client = _client_socket(client_netns, dst, "udp", None)
        except BaseException:
            self._listener.close()
            raise
        self._listener.settimeout(0.02)
        self._dst = (dst, port)
        self._interval = interval
        self._stop = threading.Event()
        self.sent = 0
        self.received = 0
        self._threads = [
            threading.Thread(target=self._send_loop, name="udp-stream-send", daemon=True),
            threading.Thread(target=self._recv_loop, name="udp-stream-recv", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._client.sendto(b"mnp-stream", self._dst)
                self.sent += 1
            except OSError:
                pass

    def _recv_loop(self) -> None:
        while True:
            try:
                if self._listener.recv(64) == b"mnp-stream":
                    self.received += 1
            except TimeoutError:
                if self._stop.is_set():
                    return
            except OSError:
                return

    def stop(self) -> tuple[int, int]:
        """Stop sending, collect stragglers, close; returns (sent, received)."""
        if not self._stop.is_set():
            self._stop.set()
            for t in self._threads:
                t.join()
            self._client.close()
            self._listener.close()
        return self.sent, self.received

    def __enter__(self) -> UdpStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = [
    "Connection",
    "Listener",
    "Probe",
    "Target",
    "UdpStream",
    "connectivity_matrix",
    "format_matrix",
    "ping",
    "probe",
    "probe_all",
]
