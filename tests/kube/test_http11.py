"""mnp's HTTP/1.1 client against a scripted server on loopback: keep-alive, framing, and the one retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mnp.kube.http11 import Http11, ProtocolError

Reply = Callable[[int, int, bytes], Awaitable[bytes | None]]  # (connection no., request no., request)


class Scripted:
    """A plain HTTP server whose answers a test writes: `reply(conn, n, request)` returns the bytes to
    send (None: close the connection without answering). It records every request it read."""

    def __init__(self, reply: Reply, close_after: frozenset[int] = frozenset()) -> None:
        self.reply = reply
        self.close_after = close_after  # connections closed right after their first answer
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Http11:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Http11(f"http://127.0.0.1:{port}", None)

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, n = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                n += 1
                self.requests.append((conn, request))
                answer = await self.reply(conn, n, request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if conn in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def ok(body: bytes = b'{"ok":true}', extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def always_ok(conn: int, n: int, request: bytes) -> bytes | None:
    return ok()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_requests_share_one_kept_alive_connection_and_carry_path_query_headers_and_body() -> None:
    async def main() -> None:
        server = Scripted(always_ok)
        async with server as http:
            for _ in range(3):
                answer = await http.request(
                    "PATCH",
                    "/apis/mnp.dev/v1alpha1/namespaces/default/podnetworkrulesets/p1/status",
                    {"fieldManager": "mnp agent", "labelSelector": "mnp.dev/node=node-1"},
                    {"Content-Type": "application/merge-patch+json"},
                    b'{"status":{}}',
                    5,
                )
                assert (answer.status, answer.body) == (200, b'{"ok":true}')
            await http.close()
        assert server.connections == 1
        first = server.requests[0][1]
        assert first.startswith(
            b"PATCH /apis/mnp.dev/v1alpha1/namespaces/default/podnetworkrulesets/p1/status"
            b"?fieldManager=mnp+agent&labelSelector=mnp.dev%2Fnode%3Dnode-1 HTTP/1.1\r\n"
        )
        assert b"\r\nContent-Type: application/merge-patch+json\r\n" in first
        assert b"\r\nContent-Length: 13\r\n" in first and first.endswith(b'\r\n\r\n{"status":{}}')

    run(main())


def test_a_chunked_answer_is_joined_and_its_trailer_dropped() -> None:
    async def chunked(conn: int, n: int, request: bytes) -> bytes | None:
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5;ext=1\r\n{"a":\r\n4\r\n 1}\n\r\n0\r\nX-Trailer: t\r\n\r\n'
        )

    async def main() -> None:
        async with Scripted(chunked) as http:
            assert (await http.request("GET", "/x", None, {}, None, 5)).body == b'{"a": 1}\n'
            assert (await http.request("GET", "/x", None, {}, None, 5)).body == b'{"a": 1}\n'
            await http.close()

    run(main())


def test_connection_close_and_a_body_ended_by_the_connection_are_not_reused() -> None:
    async def closing(conn: int, n: int, request: bytes) -> bytes | None:
        if conn == 1:
            return ok(extra="Connection: close\r\n")
        if conn == 2:
            return b"HTTP/1.1 500 Internal Server Error\r\n\r\nno length"
        return ok()

    async def main() -> None:
        server = Scripted(closing, close_after=frozenset({2}))
        async with server as http:
            assert (await http.request("GET", "/a", None, {}, None, 5)).status == 200
            assert server.connections == 1
            answer = await http.request("GET", "/b", None, {}, None, 5)
            assert (answer.status, answer.body) == (500, b"no length")
            assert (await http.request("GET", "/c", None, {}, None, 5)).status == 200
            await http.close()
        assert server.connections == 3  # neither the closed one nor the read-to-end one was reused

    run(main())


def test_a_kept_alive_connection_the_server_closed_unanswered_gets_the_request_once_more() -> None:
    async def drop_second(conn: int, n: int, request: bytes) -> bytes | None:
        return None if (conn, n) == (1, 2) else ok()

    async def main() -> None:
        server = Scripted(drop_second)
        async with server as http:
            await http.request("POST", "/a", None, {}, b"{}", 5)
            answer = await http.request("POST", "/b", None, {}, b'{"n":2}', 5)
            assert answer.status == 200
            await http.close()
        assert [(c, r.split(b" ")[1]) for c, r in server.requests] == [(1, b"/a"), (1, b"/b"), (2, b"/b")]

    run(main())


def test_a_new_connection_closed_unanswered_is_an_error_not_a_retry() -> None:
    async def drop(conn: int, n: int, request: bytes) -> bytes | None:
        return None

    async def main() -> None:
        server = Scripted(drop)
        async with server as http:
            with pytest.raises(ProtocolError, match="without an answer"):
                await http.request("POST", "/a", None, {}, b"{}", 5)
        assert len(server.requests) == 1

    run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_a_protocol_error(answer: bytes) -> None:
    async def garbage(conn: int, n: int, request: bytes) -> bytes | None:
        return answer

    async def main() -> None:
        async with Scripted(garbage) as http:
            with pytest.raises(ProtocolError):
                await http.request("GET", "/a", None, {}, None, 5)
            await http.close()

    run(main())


def test_an_answer_that_never_comes_times_out() -> None:
    async def slow(conn: int, n: int, request: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return ok()

    async def main() -> None:
        async with Scripted(slow) as http:
            with pytest.raises(TimeoutError):
                await http.request("GET", "/a", None, {}, None, 0.3)
            await http.close()

    run(main())
